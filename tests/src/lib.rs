//! Harness for the root-only end-to-end tests: find the built `monitor` binary, run it with
//! arguments, collect its JSON-lines output, and run workloads in a dedicated cgroup so that
//! assertions key on our own processes (the machine is shared with other work).
//!
//! Area-specific helpers live in their own modules.

pub mod capture;
pub mod containers;
pub mod deploy;
pub mod harness;
pub mod live;
pub mod prom;
