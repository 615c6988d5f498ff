//! The HTTP endpoint over real TCP: probes, metrics, basic auth, TLS, and a real Prometheus
//! server scraping it.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use monitor::alert::{Alert, NoiseControl, Priority, RateLimitConfig};
use monitor::event::Event;
use monitor::http::{BasicAuthConfig, HttpConfig, HttpServer, Readiness, TlsFiles};
use tokio::sync::oneshot;

struct Running {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

async fn start(cfg: HttpConfig, readiness: Arc<Readiness>) -> Running {
    let tls = cfg.tls.is_some();
    let server = HttpServer::bind(&cfg).await.unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(server.run(readiness, async {
        let _ = rx.await;
    }));
    let base = format!("{}://localhost:{}", if tls { "https" } else { "http" }, addr.port());
    Running {
        base,
        stop: Some(tx),
        task,
    }
}

fn loopback() -> HttpConfig {
    HttpConfig {
        address: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    }
}

#[test]
fn default_address_is_loopback_9376() {
    assert_eq!(HttpConfig::default().address.to_string(), "127.0.0.1:9376");
}

#[tokio::test]
async fn probes_and_metrics() {
    monitor::metrics::init();
    monitor::metrics::set_build_info("9.9.9", "6.18", "h1");
    let ready = Readiness::new();
    let s = start(loopback(), Arc::clone(&ready)).await;
    let c = reqwest::Client::new();
    let get = |p: &str| c.get(format!("{}{p}", s.base)).send();

    let r = get("/healthz").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok\n");

    let r = get("/readyz").await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.text().await.unwrap(),
        "not ready: programs_attached=false rules_loaded=false\n"
    );
    ready.set_rules_loaded(true);
    let r = get("/readyz").await.unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        "not ready: programs_attached=false rules_loaded=true\n"
    );
    ready.set_programs_attached(true);
    let r = get("/readyz").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ready\n");

    let r = get("/metrics").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let body = r.text().await.unwrap();
    assert!(
        body.contains("monitor_build_info{kernel=\"6.18\",rules_hash=\"h1\",version=\"9.9.9\"} 1"),
        "{body}"
    );
    assert!(body.contains("# TYPE process_cpu_seconds_total counter"));
    assert!(body.contains("# TYPE monitor_rule_eval_duration_seconds histogram"));

    assert_eq!(get("/nope").await.unwrap().status(), 404);
    assert_eq!(
        c.post(format!("{}/metrics", s.base)).send().await.unwrap().status(),
        405
    );
    s.stop().await;
}

#[tokio::test]
async fn basic_auth_guards_metrics_not_probes() {
    let dir = tempfile::tempdir().unwrap();
    let pwf = dir.path().join("pw");
    std::fs::write(&pwf, "s3cret\n").unwrap();
    let cfg = HttpConfig {
        basic_auth: Some(BasicAuthConfig {
            username: "prom".into(),
            password: None,
            password_file: Some(pwf),
        }),
        ..loopback()
    };
    let s = start(cfg, Readiness::new()).await;
    let c = reqwest::Client::new();
    let url = format!("{}/metrics", s.base);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"monitor\"");
    assert_eq!(
        c.get(&url)
            .basic_auth("prom", Some("wrong"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        c.get(&url)
            .basic_auth("other", Some("s3cret"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        c.get(&url)
            .basic_auth("prom", Some("s3cret"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(c.get(format!("{}/healthz", s.base)).send().await.unwrap().status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn bad_basic_auth_config_and_busy_port_are_clear_errors() {
    let cfg = HttpConfig {
        basic_auth: Some(BasicAuthConfig {
            username: "u".into(),
            password: None,
            password_file: None,
        }),
        ..loopback()
    };
    let e = HttpServer::bind(&cfg).await.err().unwrap();
    assert_eq!(
        e.to_string(),
        "http.basic_auth needs exactly one of password and password_file"
    );
    let first = HttpServer::bind(&loopback()).await.unwrap();
    let cfg = HttpConfig {
        address: first.local_addr(),
        ..Default::default()
    };
    let e = HttpServer::bind(&cfg).await.err().unwrap();
    assert_eq!(
        e.to_string(),
        format!("cannot listen on http.address {}", first.local_addr())
    );
}

#[tokio::test]
async fn tls_serves_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (ca, cert, key) = (p("ca.pem"), p("cert.pem"), p("key.pem"));
    std::fs::write(
        p("ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\n",
    )
    .unwrap();
    // webpki refuses a CA certificate as the server's own, so: a CA, then a leaf signed by it.
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ],
        &[
            ("-subj", "/CN=test-ca".as_ref()),
            ("-keyout", p("ca.key").as_os_str()),
            ("-out", ca.as_os_str()),
        ],
    );
    openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ],
        &[
            ("-subj", "/CN=localhost".as_ref()),
            ("-keyout", key.as_os_str()),
            ("-out", p("csr").as_os_str()),
        ],
    );
    openssl(
        &["x509", "-req", "-days", "1"],
        &[
            ("-in", p("csr").as_os_str()),
            ("-CA", ca.as_os_str()),
            ("-CAkey", p("ca.key").as_os_str()),
            ("-CAcreateserial", "".as_ref()),
            ("-extfile", p("ext").as_os_str()),
            ("-out", cert.as_os_str()),
        ],
    );
    let cfg = HttpConfig {
        tls: Some(TlsFiles {
            cert: cert.clone(),
            key,
        }),
        ..loopback()
    };
    let s = start(cfg, Readiness::new()).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let c = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
    let r = c.get(format!("{}/healthz", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Plain HTTP to the TLS port gets no answer.
    let plain = s.base.replace("https://", "http://");
    assert!(
        reqwest::Client::new()
            .get(format!("{plain}/healthz"))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .is_err()
    );
    s.stop().await;

    let bad = HttpConfig {
        tls: Some(TlsFiles {
            cert: cert.clone(),
            key: cert.clone(),
        }),
        ..loopback()
    };
    let e = HttpServer::bind(&bad).await.err().unwrap();
    assert!(
        format!("{e:#}").starts_with(&format!(
            "http.tls.key {} holds no usable PEM private key",
            cert.display()
        )),
        "{e:#}"
    );
}

fn openssl(args: &[&str], pairs: &[(&str, &std::ffi::OsStr)]) {
    let mut c = Command::new("openssl");
    c.args(args);
    for (flag, v) in pairs {
        c.arg(flag);
        if !v.is_empty() {
            c.arg(v);
        }
    }
    let out = c
        .output()
        .expect("the openssl command (Debian package openssl) is needed to make test certificates");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real Prometheus (Debian's binary) scrapes our endpoint; its query API must return the
/// exact count of alerts we produced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_scrape() {
    let prom = which("prometheus")
        .expect("the prometheus binary (Debian package prometheus) is needed; scripts/setup.sh installs it");
    let s = start(loopback(), Readiness::new()).await;
    let target = s.base.trim_start_matches("http://").replace("localhost", "127.0.0.1");

    let rule = "Prometheus scrape test rule";
    let mut nc = NoiseControl::new(RateLimitConfig {
        burst: 1,
        ..Default::default()
    });
    let ev = Event::default();
    let now = std::time::Instant::now();
    for i in 0..7 {
        let a = Alert::new(
            rule,
            Priority::Critical,
            &[],
            format!("o{i}"),
            BTreeMap::new(),
            &ev,
            "n",
        );
        let _ = nc.admit(a, now);
    }

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: monitor\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let spawn = |port: u16| {
        KillOnDrop(
            Command::new(&prom)
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut port = free_port();
    let mut prom_child = spawn(port);
    let mut respawned = 0;

    let c = reqwest::Client::new();
    let q = format!("monitor_alerts_total{{rule=\"{rule}\",priority=\"Critical\",job=\"monitor\"}}");
    let sq = format!("monitor_alerts_suppressed_total{{rule=\"{rule}\"}}");
    let start = Instant::now();
    let query = async |port: u16, expr: &str| -> Option<String> {
        let r = c
            .get(format!("http://127.0.0.1:{port}/api/v1/query"))
            .query(&[("query", expr)])
            .send()
            .await
            .ok()?;
        let v: serde_json::Value = serde_json::from_str(&r.text().await.ok()?).ok()?;
        assert_eq!(v["status"], "success", "{v}");
        v["data"]["result"][0]["value"][1].as_str().map(str::to_string)
    };
    loop {
        if let Some(v) = query(port, &q).await {
            assert_eq!(v, "7");
            break;
        }
        // Prometheus exits at once when its port was taken between free_port() and its bind
        // (the machine is shared): start it again on another port.
        if let Some(st) = prom_child.0.try_wait().unwrap() {
            respawned += 1;
            assert!(respawned < 5, "prometheus keeps exiting ({st}); last port {port}");
            port = free_port();
            prom_child = spawn(port);
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Prometheus never returned {q}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(query(port, &sq).await.as_deref(), Some("6"));
    s.stop().await;
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
}
