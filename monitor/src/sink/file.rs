//! Append JSON lines to a file, rotating by size: `path` -> `path.1` -> ... -> `path.<keep>`,
//! the oldest deleted. A line is never split across files; a file may exceed `max_bytes` only
//! when a single alert is larger than `max_bytes`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::SinkCtx;

/// Alerts can name secrets' paths and users' commands: not world-readable.
const FILE_MODE: u32 = 0o640;

pub struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: io::BufWriter<File>,
    size: u64,
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl FileSink {
    pub fn open(path: PathBuf, max_bytes: u64, keep: u32) -> io::Result<FileSink> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(FILE_MODE)
            .open(&path)?;
        let size = file.metadata()?.len();
        Ok(FileSink {
            path,
            max_bytes: max_bytes.max(1),
            keep,
            file: io::BufWriter::new(file),
            size,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        if self.keep == 0 {
            // Nothing kept: start the file again.
            let f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(FILE_MODE)
                .open(&self.path)?;
            self.file = io::BufWriter::new(f);
            self.size = 0;
            return Ok(());
        }
        let oldest = rotated(&self.path, self.keep);
        match std::fs::remove_file(&oldest) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        for n in (1..self.keep).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(FILE_MODE)
            .open(&self.path)?;
        self.file = io::BufWriter::new(f);
        self.size = 0;
        Ok(())
    }

    /// Append one line (the newline is added here), rotating first if it would not fit.
    pub fn write_line(&mut self, line: &str) -> io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line.as_bytes())?;
        self.file.write_all(b"\n")?;
        self.size += len;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

pub(super) fn run(mut ctx: SinkCtx, mut f: FileSink) {
    while let Some(a) = ctx.rx.blocking_recv() {
        let mut next = Some(a);
        while let Some(a) = next.take() {
            ctx.dequeued(&a);
            match f.write_line(&a.to_json()) {
                Ok(()) => ctx.sent(),
                Err(e) => {
                    ctx.dropped(1);
                    tracing::error!(sink = %ctx.label, path = %f.path.display(), error = %e, "Could not write an alert to the alert file; it is lost.");
                }
            }
            next = ctx.rx.try_recv().ok();
        }
        if let Err(e) = f.flush() {
            tracing::error!(sink = %ctx.label, path = %f.path.display(), error = %e, "Could not flush the alert file; alerts may be lost.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_keeping_n() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("alerts.json");
        let mut f = FileSink::open(p.clone(), 25, 2).unwrap();
        // 10-byte lines (9 + newline): two fit in 25 bytes, the third rotates.
        for i in 0..7 {
            f.write_line(&format!("line-{i:04}")).unwrap();
        }
        f.flush().unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&p), "line-0006\n");
        assert_eq!(read(&rotated(&p, 1)), "line-0004\nline-0005\n");
        assert_eq!(read(&rotated(&p, 2)), "line-0002\nline-0003\n");
        assert!(!rotated(&p, 3).exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn reopen_appends_and_counts_existing_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/alerts.json");
        {
            let mut f = FileSink::open(p.clone(), 25, 1).unwrap();
            f.write_line("line-0000").unwrap();
            f.write_line("line-0001").unwrap();
            f.flush().unwrap();
        }
        let mut f = FileSink::open(p.clone(), 25, 1).unwrap();
        f.write_line("line-0002").unwrap();
        f.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "line-0002\n");
        assert_eq!(
            std::fs::read_to_string(rotated(&p, 1)).unwrap(),
            "line-0000\nline-0001\n"
        );
    }
}
