//! `monitor containers` (in progress).

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn main(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("monitor containers is not built yet")
}
