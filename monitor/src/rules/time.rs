//! UTC time formatting for alerts and `evt.time*` fields, without a date crate: only the
//! proleptic Gregorian conversion from days since the epoch is needed.

/// (year, month, day) from days since 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `2026-11-23T04:46:24.123456789Z`.
pub fn rfc3339(ts_ns: u64) -> String {
    let secs = (ts_ns / 1_000_000_000) as i64;
    let ns = ts_ns % 1_000_000_000;
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{ns:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// `HH:MM:SS.nnnnnnnnn` (or `HH:MM:SS`).
pub fn clock(ts_ns: u64, with_ns: bool) -> String {
    let secs = ts_ns / 1_000_000_000;
    let sod = secs % 86_400;
    let base = format!("{:02}:{:02}:{:02}", sod / 3600, sod / 60 % 60, sod % 60);
    if with_ns {
        format!("{base}.{:09}", ts_ns % 1_000_000_000)
    } else {
        base
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        // 2024-02-29T12:34:56.000000007Z
        assert_eq!(
            super::rfc3339(1_709_210_096_000_000_007),
            "2024-02-29T12:34:56.000000007Z"
        );
        assert_eq!(super::clock(1_709_210_096_000_000_007, false), "12:34:56");
    }
}
