//! The monitor daemon as a library: capture, attribution, rules, alerts, metrics.
//! `main.rs` only parses the command line and calls into `cmd`.
//!
//! Data flows one way (see ARCHITECTURE.md):
//! hook -> in-kernel filter -> ring buffers -> `bpf` reader -> `decode` + `proctable`
//! -> `container` attribution (bounded retry stage) -> `rules` -> `alert` -> `sink`s,
//! with every stage counted in Prometheus metrics (`metrics`, served by `http`).

pub mod alert;
pub mod budget;
pub mod bpf;
pub mod cmd;
pub mod config;
pub mod container;
pub mod decode;
pub mod decode_sockaddr;
pub mod event;
pub mod http;
pub mod metrics;
pub mod nsfs;
pub mod pipeline;
pub mod proctable;
pub mod rules;
pub mod sink;
pub mod time;
