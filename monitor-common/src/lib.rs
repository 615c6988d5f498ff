//! Wire contract between the kernel programs (`monitor-ebpf`) and the daemon (`monitor`).
//!
//! Every record in a ring buffer starts with an [`EventHeader`]; `header.kind` says which payload
//! follows and `header.len` is the length of the whole record. The decoder checks `version` and
//! `len` before it reads anything else, so a record from a mismatched build is counted, never
//! misread.
//!
//! Rules for this file: `#[repr(C)]`, `Clone + Copy`, no `bool` (hidden padding), sizes pinned
//! by `const` asserts, ids never reused.
#![no_std]

pub mod kind;
pub mod wire;

pub use kind::{EventType, Family, MAX_KIND_ID};
pub use wire::*;

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn kinds_round_trip_and_fit_the_maps() {
        let mut names = std::collections::BTreeSet::new();
        for k in EventType::ALL {
            assert_eq!(EventType::from_id(*k as u16), Some(*k));
            assert_eq!(EventType::from_name(k.name()), Some(*k));
            assert!((*k as u32) < MAX_KIND_ID);
            assert!(names.insert(k.name()), "duplicate name {}", k.name());
        }
        assert_eq!(EventType::from_id(0), None);
    }

    #[test]
    fn fd_kinds_round_trip() {
        for v in 0..=15u8 {
            let k = FdKind::from_u8(v);
            if k != FdKind::Unknown {
                assert_eq!(k as u8, v);
            }
        }
        assert_eq!(FdKind::from_u8(200), FdKind::Unknown);
    }

    // The per-CPU scratch (a record plus one slot of slack) must stay under the percpu unit size.
    const _: () = assert!(MAX_RECORD + STR_CAP < 32 * 1024);

    #[test]
    fn record_bounds() {
        assert_eq!(STRINGS_OFFSET, 120 + 264);
    }
}
