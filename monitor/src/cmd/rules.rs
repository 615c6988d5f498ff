//! `monitor rules check|test|diff` (in progress).

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn main(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("monitor rules is not built yet")
}
