//! `monitor replay` (in progress).

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn main(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("monitor replay is not built yet")
}
