//! The API client: bearer auth, JSON in and out, problem details turned into
//! one-line errors.

use anyhow::Context;
use helix_core::api::Problem;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Clone)]
pub struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// The API did not answer at all (refused, reset, timed out): worth
/// retrying, unlike an [`ApiFailure`].
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the HelixStack API at {base}: {error}")]
pub struct Unreachable {
    pub base: String,
    pub error: String,
}

/// An API error with its status, for callers that react to some of them.
#[derive(Debug, thiserror::Error)]
#[error("{detail} (HTTP {status})")]
pub struct ApiFailure {
    pub status: StatusCode,
    pub detail: String,
    pub missing: Vec<String>,
}

impl Api {
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().pool_max_idle_per_host(16).build().context("building the HTTP client")?;
        Ok(Api { base: base.trim_end_matches('/').to_owned(), token, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Whether a HelixStack server answers at the base URL.
    pub async fn healthy(&self) -> bool {
        let probe = self.http.get(format!("{}/healthz", self.base)).timeout(std::time::Duration::from_millis(500));
        matches!(probe.send().await, Ok(r) if r.status().is_success())
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        self.send(self.request(Method::PUT, path).json(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.request(Method::DELETE, path)).await
    }

    pub async fn put_bytes(&self, path: &str, body: bytes::Bytes) -> anyhow::Result<()> {
        let req = self.request(Method::PUT, path).header("content-type", "application/octet-stream").body(body);
        let _: serde_json::Value = self.send(req).await?;
        Ok(())
    }

    /// A GET whose answer is read as it arrives (server-sent events).
    pub async fn get_streaming(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let resp = self
            .request(Method::GET, path)
            .send()
            .await
            .map_err(|e| Unreachable { base: self.base.clone(), error: e.to_string() })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        self.send::<serde_json::Value>(self.request(Method::GET, path)).await?;
        anyhow::bail!("the API answered {}", resp.status())
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let resp = req.send().await.map_err(|e| Unreachable { base: self.base.clone(), error: e.to_string() })?;
        let status = resp.status();
        let bytes = resp.bytes().await.context("reading the API's answer")?;
        if !status.is_success() {
            let failure = match serde_json::from_slice::<Problem>(&bytes) {
                Ok(p) => ApiFailure { status, detail: p.detail, missing: p.missing.unwrap_or_default() },
                Err(_) => ApiFailure {
                    status,
                    detail: String::from_utf8_lossy(&bytes).trim().chars().take(300).collect(),
                    missing: Vec::new(),
                },
            };
            return Err(failure.into());
        }
        serde_json::from_slice(&bytes)
            .with_context(|| format!("the API answered {status} with a body this CLI cannot read"))
    }
}
