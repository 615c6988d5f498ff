//! `monitor doctor`: load and attach everything once, print the coverage report as JSON.

use anyhow::Context as _;

use crate::bpf::{Capture, CaptureOptions};

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn main(_args: Args) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let (capture, _rx) = Capture::start(CaptureOptions {
            queue_capacity: 16,
            ..CaptureOptions::default()
        })?;
        println!("{}", serde_json::to_string_pretty(capture.coverage())?);
        capture.shutdown();
        Ok(0)
    })
}
