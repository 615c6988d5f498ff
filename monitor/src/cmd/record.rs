//! `monitor record FILE`: the enriched live event stream saved as JSON lines, the input of
//! `monitor replay` and `monitor rules diff`.

use std::path::PathBuf;

use anyhow::Context as _;

use super::events::{Filter, stream};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the recording (created or truncated).
    pub file: PathBuf,
    #[command(flatten)]
    pub filter: Filter,
}

pub fn main(args: Args) -> anyhow::Result<i32> {
    let file = std::fs::File::create(&args.file).with_context(|| format!("creating {}", args.file.display()))?;
    stream(args.filter, std::io::BufWriter::new(file))
}
