//! A real Prometheus (Debian's package) scraping a target on loopback, queried over its HTTP API.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::containers::TempDir;

pub struct Prometheus {
    child: Child,
    pub port: u16,
    /// Times it was started again on another port (see `wait_for`).
    restarts: u32,
    dir: TempDir,
}

/// A free loopback port (bound then released; good enough for a test host).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// GET a loopback URL with curl; body on success.
pub fn http_get(url: &str) -> Result<String> {
    let out = Command::new("curl").args(["-fsS", "--max-time", "5", url]).output().context("spawn curl")?;
    if !out.status.success() {
        bail!("GET {url}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Prometheus {
    /// Start Prometheus scraping `target` (host:port) every second.
    pub fn start(target: &str) -> Result<Prometheus> {
        let dir = TempDir::new("prometheus")?;
        let cfg: PathBuf = dir.0.join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: monitor\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )?;
        let port = free_port();
        let child = Self::spawn(&dir, port)?;
        Ok(Prometheus { child, port, restarts: 0, dir })
    }

    fn spawn(dir: &TempDir, port: u16) -> Result<Child> {
        Command::new("prometheus")
            .arg(format!("--config.file={}", dir.0.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.0.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn prometheus (Debian package prometheus; scripts/setup.sh installs it)")
    }

    /// Instant query; the first sample's value, if any.
    pub fn query(&self, expr: &str) -> Result<Option<String>> {
        let out = Command::new("curl")
            .args(["-fsS", "--max-time", "5", "-G", "--data-urlencode"])
            .arg(format!("query={expr}"))
            .arg(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .output()?;
        if !out.status.success() {
            return Ok(None);
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        anyhow::ensure!(v["status"] == "success", "query {expr} failed: {v}");
        Ok(v["data"]["result"][0]["value"][1].as_str().map(str::to_string))
    }

    /// Poll `expr` until `pred` holds on its value, up to `timeout`.
    pub fn wait_for(&mut self, expr: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> Result<String> {
        let start = Instant::now();
        loop {
            if let Some(v) = self.query(expr)?
                && pred(&v) {
                    return Ok(v);
                }
            // Prometheus exits at once when its port was taken between free_port() and its
            // bind (the machine is shared): start it again on another port.
            if let Some(st) = self.child.try_wait()? {
                self.restarts += 1;
                if self.restarts >= 5 {
                    bail!("prometheus keeps exiting ({st}); last port {}", self.port);
                }
                self.port = free_port();
                self.child = Self::spawn(&self.dir, self.port)?;
            }
            if start.elapsed() > timeout {
                bail!("Prometheus never returned a matching value for {expr}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
