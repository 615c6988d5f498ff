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
