//! Time formatting for alerts and `evt.time*` fields. Event timestamps are nanoseconds since
//! the Unix epoch, UTC.

use std::time::{Duration, UNIX_EPOCH};

/// `2026-11-23T04:46:24.123456789Z` (RFC 3339, UTC, nanoseconds).
pub fn rfc3339(ts_ns: u64) -> String {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(ts_ns)).to_string()
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
