//! Sinks against real endpoints: a local HTTP server (hyper) for the webhook, real files.
//! Metrics are process-wide, so the tests in this file run one at a time (SERIAL) and assert
//! on counter deltas.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use monitor::alert::{Alert, Priority};
use monitor::event::Event;
use monitor::metrics::counter_value;
use monitor::sink::{SinkConfig, Sinks};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A real HTTP server that records POST bodies; `delay` slows every answer. Stopping it
/// closes the listener and every open connection (as a crashed endpoint would).
struct Server {
    addr: SocketAddr,
    tasks: JoinSet<()>,
}

impl Server {
    async fn start(addr: &str, delay: Duration, bodies: Arc<Mutex<Vec<String>>>) -> Server {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut tasks = JoinSet::new();
        let b = Arc::clone(&bodies);
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let b = Arc::clone(&b);
                conns.spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let b = Arc::clone(&b);
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            tokio::time::sleep(delay).await;
                            b.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
                            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Server { addr, tasks }
    }

    async fn stop(mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection.
        self.tasks.shutdown().await;
    }
}

fn alert(i: usize) -> Arc<Alert> {
    let ev = Event {
        ts: 1_700_000_000_000_000_000 + i as u64,
        ..Default::default()
    };
    Arc::new(Alert::new(
        "Sink test",
        Priority::Warning,
        &[],
        format!("alert {i}"),
        BTreeMap::new(),
        &ev,
        "node",
    ))
}

fn webhook(addr: SocketAddr, retries: u32) -> SinkConfig {
    SinkConfig::Webhook {
        url: format!("http://{addr}/alerts"),
        timeout: Duration::from_millis(500),
        retries,
        backoff: Duration::from_millis(20),
        headers: BTreeMap::from([("X-Token".to_string(), "t".to_string())]),
        tls_ca: None,
    }
}

fn metric(name: &str, sink: &str) -> f64 {
    counter_value(name, &[("sink", sink)]).unwrap_or(0.0)
}

async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_delivers_every_alert_as_falco_json() {
    let _g = SERIAL.lock().await;
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let server = Server::start("127.0.0.1:0", Duration::ZERO, Arc::clone(&bodies)).await;
    let sent0 = metric("monitor_sink_sent_alerts_total", "webhook");
    let sinks = Sinks::start(&[webhook(server.addr, 2)], 100).unwrap();
    for i in 0..20 {
        sinks.send(alert(i));
    }
    sinks.shutdown(Duration::from_secs(10)).await;
    let got = bodies.lock().unwrap().clone();
    assert_eq!(got.len(), 20);
    for (i, b) in got.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(b).unwrap();
        assert_eq!(v["output"], format!("alert {i}"));
        assert_eq!(v["priority"], "Warning");
        assert_eq!(v["rule"], "Sink test");
    }
    assert_eq!(metric("monitor_sink_sent_alerts_total", "webhook") - sent0, 20.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_down_drops_bounded_then_recovers() {
    let _g = SERIAL.lock().await;
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let server = Server::start("127.0.0.1:0", Duration::ZERO, Arc::clone(&bodies)).await;
    let addr = server.addr;
    server.stop().await;

    let dropped0 = metric("monitor_sink_dropped_alerts_total", "webhook");
    let sent0 = metric("monitor_sink_sent_alerts_total", "webhook");
    let cap = 8;
    let sinks = Sinks::start(&[webhook(addr, 1)], cap).unwrap();
    let t = Instant::now();
    for i in 0..500 {
        sinks.send(alert(i));
    }
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "send blocked: {:?}",
        t.elapsed()
    );
    // At most `cap` queued plus the few the task took meanwhile survive; the rest are counted
    // at once.
    let dropped_at_send = metric("monitor_sink_dropped_alerts_total", "webhook") - dropped0;
    assert!(dropped_at_send >= 450.0, "dropped {dropped_at_send}");
    let q = counter_value("monitor_sink_queue_length", &[("sink", "webhook")]).unwrap();
    assert!(q <= cap as f64, "queue {q}");

    // Retries fail (connection refused) and are counted as drops too, until the queue drains.
    wait_for("failed deliveries to drain", Duration::from_secs(20), || {
        metric("monitor_sink_dropped_alerts_total", "webhook") - dropped0 >= 500.0
    })
    .await;
    assert_eq!(metric("monitor_sink_sent_alerts_total", "webhook") - sent0, 0.0);

    // The endpoint comes back on the same address: new alerts flow again.
    let server = Server::start(&addr.to_string(), Duration::ZERO, Arc::clone(&bodies)).await;
    for i in 1000..1005 {
        sinks.send(alert(i));
    }
    wait_for("delivery after recovery", Duration::from_secs(10), || {
        bodies.lock().unwrap().len() == 5
    })
    .await;
    sinks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(metric("monitor_sink_sent_alerts_total", "webhook") - sent0, 5.0);
    assert!(bodies.lock().unwrap()[0].contains("\"alert 1000\""));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_webhook_does_not_block_other_sinks() {
    let _g = SERIAL.lock().await;
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let server = Server::start("127.0.0.1:0", Duration::from_secs(2), Arc::clone(&bodies)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.json");
    let cfgs = [
        webhook(server.addr, 0),
        SinkConfig::File {
            path: path.clone(),
            max_bytes: 10 << 20,
            keep: 1,
        },
    ];
    let wd0 = metric("monitor_sink_dropped_alerts_total", "webhook");
    let sinks = Sinks::start(&cfgs, 16).unwrap();
    let t = Instant::now();
    for i in 0..10 {
        for j in 0..10 {
            sinks.send(alert(i * 10 + j));
        }
        // Give the file sink time to drain its queue between bursts.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "send was slowed by the webhook: {:?}",
        t.elapsed()
    );
    wait_for("file sink to write all alerts", Duration::from_secs(5), || {
        std::fs::read_to_string(&path)
            .map(|s| s.lines().count() == 100)
            .unwrap_or(false)
    })
    .await;
    let webhook_drops = metric("monitor_sink_dropped_alerts_total", "webhook") - wd0;
    assert!(webhook_drops >= 100.0 - 16.0 - 2.0, "webhook drops {webhook_drops}");
    assert_eq!(metric("monitor_sink_dropped_alerts_total", "file"), 0.0);
    // Shutdown is bounded even though the webhook still holds alerts.
    let t = Instant::now();
    sinks.shutdown(Duration::from_millis(300)).await;
    assert!(t.elapsed() < Duration::from_secs(2));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_rotates_through_sinks_api() {
    let _g = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.json");
    let one = alert(0).to_json().len() as u64 + 1;
    let sinks = Sinks::start(
        &[SinkConfig::File {
            path: path.clone(),
            max_bytes: one * 3,
            keep: 2,
        }],
        1000,
    )
    .unwrap();
    for i in 0..10 {
        sinks.send(alert(i));
    }
    sinks.shutdown(Duration::from_secs(5)).await;
    let lines = |p: &std::path::Path| std::fs::read_to_string(p).unwrap().lines().count();
    assert_eq!(lines(&path), 1);
    assert_eq!(lines(&dir.path().join("a.json.1")), 3);
    assert_eq!(lines(&dir.path().join("a.json.2")), 3);
    assert!(!dir.path().join("a.json.3").exists());
    let last: Alert = serde_json::from_str(std::fs::read_to_string(&path).unwrap().trim()).unwrap();
    assert_eq!(last.output, "alert 9");
}

#[tokio::test]
async fn bad_webhook_url_is_a_clear_error() {
    let cfg = SinkConfig::Webhook {
        url: "ftp://x/".into(),
        timeout: Duration::from_secs(1),
        retries: 0,
        backoff: Duration::from_millis(1),
        headers: BTreeMap::new(),
        tls_ca: None,
    };
    let e = Sinks::start(&[cfg], 1).err().unwrap();
    assert_eq!(e.to_string(), "sink webhook: url ftp://x/ must be http or https");
}

/// The whole alert stage: redaction, rate limiting with a summary at shutdown, the drop alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_redacts_limits_and_summarises() {
    use monitor::alert::{Dispatcher, RateLimitConfig, Redactor, default_redaction_patterns};
    let _g = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.json");
    let sinks = Sinks::start(
        &[SinkConfig::File {
            path: path.clone(),
            max_bytes: 1 << 20,
            keep: 1,
        }],
        100,
    )
    .unwrap();
    let rl = RateLimitConfig {
        burst: 2,
        refill_per_second: 0.0,
        dedup_window: Duration::ZERO,
        ..Default::default()
    };
    let mut d = Dispatcher::new(
        Redactor::new(&default_redaction_patterns()).unwrap(),
        rl,
        Duration::from_secs(10),
        sinks,
        "node".into(),
    );
    let t0 = Instant::now();
    for i in 0..5 {
        let ev = Event {
            ts: 1_700_000_000_000_000_000 + i,
            ..Default::default()
        };
        let a = Alert::new(
            "Dispatch",
            Priority::Error,
            &[],
            format!("mysql -pS3cret #{i}"),
            BTreeMap::new(),
            &ev,
            "node",
        );
        d.dispatch(a, ev.ts, t0);
    }
    d.tick(t0 + Duration::from_secs(1));
    d.report_drops(&BTreeMap::from([("kernel_ring".to_string(), 3u64)]), t0);
    d.shutdown(Duration::from_secs(5)).await;
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let outputs: Vec<&str> = lines.iter().map(|v| v["output"].as_str().unwrap()).collect();
    assert_eq!(outputs.len(), 4, "{outputs:?}");
    assert_eq!(outputs[0], "mysql -p[REDACTED] #0");
    assert_eq!(outputs[1], "mysql -p[REDACTED] #1");
    assert!(
        outputs[2].starts_with("Monitor internal: syscall event drop. 3 events dropped"),
        "{}",
        outputs[2]
    );
    assert_eq!(lines[3]["suppressed"]["count"], 3);
    assert_eq!(lines[3]["output_fields"]["monitor.suppressed_count"], 3);
    assert!(
        outputs[3].ends_with("first suppressed: mysql -p[REDACTED] #2"),
        "{}",
        outputs[3]
    );
    assert!(!std::fs::read_to_string(&path).unwrap().contains("S3cret"));
}

fn openssl(args: &[&str], dir: &std::path::Path) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command (Debian package openssl) is needed to make test certificates");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a leaf for localhost signed by it, in `dir`: ca.pem, cert.pem, key.pem.
fn make_certs(dir: &std::path::Path) {
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\n",
    )
    .unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "1",
                "-subj",
                "/CN=test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        ]
        .concat(),
        dir,
    );
    openssl(
        &[
            &["req", "-new"][..],
            &ec,
            &["-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "csr"],
        ]
        .concat(),
        dir,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            "csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            "ext",
            "-out",
            "cert.pem",
        ],
        dir,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_over_tls_trusts_the_configured_ca_only() {
    use rustls_pki_types::pem::PemObject;
    let _g = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(dir.path().join("cert.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(dir.path().join("key.pem")).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::<String>::new()));
    let b = Arc::clone(&bodies);
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let b = Arc::clone(&b);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let b = Arc::clone(&b);
                    async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        b.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
                        Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(tls), svc).await;
            });
        }
    });
    let hook = |ca: Option<std::path::PathBuf>| SinkConfig::Webhook {
        url: format!("https://localhost:{port}/"),
        timeout: Duration::from_secs(2),
        retries: 0,
        backoff: Duration::from_millis(10),
        headers: BTreeMap::new(),
        tls_ca: ca,
    };
    let sent0 = metric("monitor_sink_sent_alerts_total", "webhook");
    let dropped0 = metric("monitor_sink_dropped_alerts_total", "webhook");
    let sinks = Sinks::start(&[hook(Some(dir.path().join("ca.pem")))], 10).unwrap();
    sinks.send(alert(1));
    sinks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(bodies.lock().unwrap().len(), 1);
    assert_eq!(metric("monitor_sink_sent_alerts_total", "webhook") - sent0, 1.0);
    // Without our CA the server's certificate is not trusted: nothing delivered, one drop.
    let sinks = Sinks::start(&[hook(None)], 10).unwrap();
    sinks.send(alert(2));
    sinks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(bodies.lock().unwrap().len(), 1);
    assert_eq!(metric("monitor_sink_dropped_alerts_total", "webhook") - dropped0, 1.0);
    server.abort();
}
