//! One module per subcommand: its clap arguments and its entry point. Each entry point returns
//! the process exit code.

pub mod containers;
pub mod doctor;
pub mod events;
pub mod record;
pub mod replay;
pub mod rules;
pub mod run;
