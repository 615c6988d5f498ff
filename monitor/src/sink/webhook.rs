//! POST each alert as JSON to a URL (Falco's `http_output` shape: one alert per request).
//!
//! Retries connection errors, timeouts, 429 and 5xx with exponential backoff; other 4xx are
//! final (retrying a rejected payload cannot help). While the endpoint is down the queue fills
//! and further alerts are dropped at `Sinks::send`, so memory stays bounded; delivery resumes
//! by itself when the endpoint answers again.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::SinkCtx;

/// The longest pause between two attempts, whatever the retry count.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub(super) struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    retries: u32,
    backoff: Duration,
}

impl Webhook {
    pub(super) fn new(
        url: &str,
        timeout: Duration,
        retries: u32,
        backoff: Duration,
        headers: &BTreeMap<String, String>,
        tls_ca: Option<&Path>,
    ) -> anyhow::Result<Webhook> {
        let url = reqwest::Url::parse(url).with_context(|| format!("invalid url {url:?}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            anyhow::bail!("url {url} must be http or https");
        }
        let mut hm = HeaderMap::new();
        hm.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes()).with_context(|| format!("invalid header name {k:?}"))?;
            let mut value = HeaderValue::from_str(v).with_context(|| format!("invalid value for header {k:?}"))?;
            value.set_sensitive(true);
            hm.insert(name, value);
        }
        let mut b = reqwest::Client::builder()
            .default_headers(hm)
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("monitor/", env!("CARGO_PKG_VERSION")))
            // Alerts go where the operator pointed, not where a redirect says.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = tls_ca {
            let pem = std::fs::read(ca).with_context(|| format!("cannot read tls_ca {}", ca.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("tls_ca {} is not a PEM certificate bundle", ca.display()))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        let client = b.build().context("cannot build the HTTP client")?;
        Ok(Webhook {
            client,
            url,
            retries,
            backoff,
        })
    }

    /// Deliver one body; Ok when accepted, Err(reason) after the last attempt.
    async fn deliver(&self, body: String) -> Result<(), String> {
        let mut delay = self.backoff;
        let mut attempt = 0;
        loop {
            let res = self.client.post(self.url.clone()).body(body.clone()).send().await;
            let (retry, reason) = match res {
                Ok(r) if r.status().is_success() => {
                    // Reading the (small) answer lets the connection be reused.
                    let _ = r.bytes().await;
                    return Ok(());
                }
                Ok(r) => {
                    let s = r.status();
                    (s.is_server_error() || s.as_u16() == 429, format!("HTTP status {s}"))
                }
                Err(e) => (true, format!("{e}")),
            };
            if !retry || attempt >= self.retries {
                return Err(reason);
            }
            attempt += 1;
            tracing::debug!(url = %self.url, attempt, reason = %reason, "Webhook delivery failed; retrying.");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }
}

pub(super) async fn run(mut ctx: SinkCtx, w: Webhook) {
    while let Some(a) = ctx.rx.recv().await {
        ctx.dequeued(&a);
        match w.deliver(a.to_json()).await {
            Ok(()) => ctx.sent(),
            Err(reason) => {
                ctx.dropped(1);
                tracing::warn!(sink = %ctx.label, url = %w.url, reason = %reason, rule = %a.rule, "Webhook did not accept an alert after all retries; it is dropped.");
            }
        }
    }
}
