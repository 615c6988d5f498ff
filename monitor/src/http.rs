//! The daemon's HTTP endpoint: `/metrics` (Prometheus text format), `/healthz` (the process
//! answers), `/readyz` (programs attached and rules loaded).
//!
//! Defaults are safe: it binds `127.0.0.1:9376`, so nothing is exposed off the node unless the
//! operator asks (`http.address: 0.0.0.0:9376` in a pod, behind a NetworkPolicy). Optional TLS
//! (rustls, PEM cert + key) and HTTP basic auth. Basic auth guards every path except `/healthz`
//! and `/readyz`, which kubelet probes call without credentials and which reveal nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Default listen address: loopback only.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:9376";

/// Bound on simultaneous connections: scrapes and probes need a handful.
const MAX_CONNECTIONS: usize = 64;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// `http` in the config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub address: SocketAddr,
    pub tls: Option<TlsFiles>,
    pub basic_auth: Option<BasicAuthConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            address: DEFAULT_ADDRESS.parse().expect("valid default address"),
            tls: None,
            basic_auth: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    pub username: String,
    /// The password itself; prefer `password_file` (a mounted Secret).
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

impl BasicAuthConfig {
    fn password(&self) -> anyhow::Result<String> {
        match (&self.password, &self.password_file) {
            (Some(p), None) => Ok(p.clone()),
            (None, Some(f)) => {
                let p = std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read http.basic_auth.password_file {}", f.display()))?;
                // A trailing newline from `echo pw > file` is not part of the password.
                Ok(p.trim_end_matches(['\n', '\r']).to_string())
            }
            _ => anyhow::bail!("http.basic_auth needs exactly one of password and password_file"),
        }
    }
}

/// Shared readiness: the daemon is ready when its programs are attached and rules loaded.
#[derive(Debug, Default)]
pub struct Readiness {
    programs_attached: AtomicBool,
    rules_loaded: AtomicBool,
}

impl Readiness {
    pub fn new() -> Arc<Readiness> {
        Arc::new(Readiness::default())
    }
    pub fn set_programs_attached(&self, v: bool) {
        self.programs_attached.store(v, Ordering::Release);
    }
    pub fn set_rules_loaded(&self, v: bool) {
        self.rules_loaded.store(v, Ordering::Release);
    }
    pub fn programs_attached(&self) -> bool {
        self.programs_attached.load(Ordering::Acquire)
    }
    pub fn rules_loaded(&self) -> bool {
        self.rules_loaded.load(Ordering::Acquire)
    }
    pub fn is_ready(&self) -> bool {
        self.programs_attached() && self.rules_loaded()
    }
}

/// A bound, not yet serving, HTTP server: bind first to learn the address (port 0 in tests).
pub struct HttpServer {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// The full expected `Authorization` header value.
    auth: Option<Arc<Vec<u8>>>,
}

fn load_tls(files: &TlsFiles) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read http.tls.cert {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("http.tls.cert {} is not a PEM certificate chain", files.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("http.tls.cert {} holds no certificate", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("http.tls.key {} holds no usable PEM private key", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("http.tls.cert and http.tls.key do not form a usable certificate")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

fn check_file(p: &Path, key: &str) -> anyhow::Result<()> {
    std::fs::metadata(p).with_context(|| format!("{key} {}", p.display()))?;
    Ok(())
}

impl HttpServer {
    pub async fn bind(cfg: &HttpConfig) -> anyhow::Result<HttpServer> {
        let tls = match &cfg.tls {
            Some(t) => {
                check_file(&t.cert, "http.tls.cert")?;
                check_file(&t.key, "http.tls.key")?;
                Some(load_tls(t)?)
            }
            None => None,
        };
        let auth = match &cfg.basic_auth {
            Some(a) => {
                let pw = a.password()?;
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{}:{pw}", a.username));
                Some(Arc::new(format!("Basic {token}").into_bytes()))
            }
            None => None,
        };
        let listener = TcpListener::bind(cfg.address)
            .await
            .with_context(|| format!("cannot listen on http.address {}", cfg.address))?;
        Ok(HttpServer { listener, tls, auth })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// Serve until `shutdown` completes; then stop accepting and give open requests a second.
    pub async fn run(self, readiness: Arc<Readiness>, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let HttpServer { listener, tls, auth } = self;
        let addr = listener.local_addr()?;
        tracing::info!(address = %addr, tls = tls.is_some(), basic_auth = auth.is_some(), "HTTP server listening for /metrics, /healthz and /readyz.");
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                acc = listener.accept() => {
                    let (stream, peer) = match acc {
                        Ok(x) => x,
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!(error = %e, "Could not accept an HTTP connection.");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    if conns.len() >= MAX_CONNECTIONS {
                        tracing::warn!(peer = %peer, "Too many HTTP connections; closing a new one.");
                        continue;
                    }
                    let readiness = Arc::clone(&readiness);
                    let auth = auth.clone();
                    let tls = tls.clone();
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let r = route(req, &readiness, auth.as_deref().map(|v| v.as_slice()));
                            async move { Ok::<_, std::convert::Infallible>(r) }
                        });
                        let mut b = hyper::server::conn::http1::Builder::new();
                        b.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
                        let res = match tls {
                            Some(acc) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acc.accept(stream)).await {
                                Ok(Ok(s)) => b.serve_connection(TokioIo::new(s), svc).await,
                                Ok(Err(e)) => {
                                    tracing::debug!(peer = %peer, error = %e, "TLS handshake failed.");
                                    return;
                                }
                                Err(_) => return,
                            },
                            None => b.serve_connection(TokioIo::new(stream), svc).await,
                        };
                        if let Err(e) = res {
                            tracing::debug!(peer = %peer, error = %e, "HTTP connection ended with an error.");
                        }
                    });
                }
            }
        }
        drop(listener);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        conns.abort_all();
        Ok(())
    }
}

/// Bind and serve until `shutdown`. Use [`HttpServer::bind`] + [`HttpServer::run`] to learn the
/// bound address first.
pub async fn serve(
    cfg: HttpConfig,
    readiness: Arc<Readiness>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    HttpServer::bind(&cfg).await?.run(readiness, shutdown).await
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn authorised(req: &Request<Incoming>, expected: &[u8]) -> bool {
    let Some(got) = req.headers().get(hyper::header::AUTHORIZATION) else {
        return false;
    };
    // Length differences are not secret; equal-length contents are compared in constant time.
    got.as_bytes().ct_eq(expected).into()
}

fn route(req: Request<Incoming>, readiness: &Readiness, auth: Option<&[u8]>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/healthz" => return text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            return if readiness.is_ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "not ready: programs_attached={} rules_loaded={}\n",
                        readiness.programs_attached(),
                        readiness.rules_loaded()
                    ),
                )
            };
        }
        _ => {}
    }
    if let Some(expected) = auth
        && !authorised(&req, expected)
    {
        let mut r = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"monitor\""));
        return r;
    }
    match req.uri().path() {
        "/metrics" => {
            use prometheus::Encoder;
            let enc = prometheus::TextEncoder::new();
            let mut buf = Vec::new();
            if let Err(e) = enc.encode(&prometheus::gather(), &mut buf) {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot encode metrics: {e}\n"),
                );
            }
            let mut r = text(StatusCode::OK, buf);
            if let Ok(v) = HeaderValue::from_str(enc.format_type()) {
                r.headers_mut().insert(CONTENT_TYPE, v);
            }
            r
        }
        _ => text(StatusCode::NOT_FOUND, "not found; try /metrics, /healthz or /readyz\n"),
    }
}
