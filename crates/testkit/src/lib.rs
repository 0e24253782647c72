//! Test harness: boots the real server on `127.0.0.1:0` with its own temp
//! data directory, and hands out a private Postgres database per test.
//!
//! Used by integration tests only. Nothing here is a mock: the server is
//! `helix_server::start`, the same wiring `helix server` runs.

use std::path::Path;
use std::time::Duration;

use helix_server::{Config, Running};
use reqwest::StatusCode;

pub use helix_server;

pub mod cases;
pub mod dns;
pub mod git;
pub mod mmdb;

/// A server running for one test.
pub struct TestServer {
    pub running: Running,
    pub data_dir: tempfile::TempDir,
    pub config: Config,
    pub http: reqwest::Client,
}

impl TestServer {
    /// SQLite in a temp dir, GC on demand only.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(data_dir.path());
        tweak(&mut config);
        let running = helix_server::start(config.clone()).await.expect("server starts");
        TestServer { running, data_dir, config, http: client() }
    }

    /// Stops the server and starts it again on the same data directory
    /// (new ports).
    pub async fn restart(self) -> TestServer {
        let TestServer { running, data_dir, config, http } = self;
        running.shutdown().await;
        let running = helix_server::start(config.clone()).await.expect("server restarts");
        TestServer { running, data_dir, config, http }
    }

    pub fn api(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.api_addr)
    }

    pub fn token(&self) -> &str {
        &self.running.admin_token
    }

    /// A request to the edge for `host`.
    pub fn edge(&self, method: reqwest::Method, host: &str, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("http://{}{path}", self.running.edge_addr)).header("host", host)
    }

    pub async fn get_edge(&self, host: &str, path: &str) -> reqwest::Response {
        self.edge(reqwest::Method::GET, host, path).send().await.expect("edge answers")
    }

    /// An authorized API call with a JSON body; returns status and JSON.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        self.call_as(self.token(), method, path, body).await
    }

    /// [`TestServer::call`] with another token.
    pub async fn call_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = self.http.request(method, self.api(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("API answers");
        let status = resp.status();
        let bytes = resp.bytes().await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    /// Deploys `files` (path → bytes) through the public API, as the CLI
    /// does; returns the finalized deployment.
    pub async fn deploy(&self, project: &str, files: &[(&str, &[u8])], production: bool) -> serde_json::Value {
        let (status, done) = self.deploy_with(project, files, &[], production).await;
        assert_eq!(status, StatusCode::OK, "{done}");
        done
    }

    /// Deploys `files` and root config files (`vercel.json` → bytes) as the
    /// CLI does; returns finalize's status and body.
    pub async fn deploy_with(
        &self,
        project: &str,
        files: &[(&str, &[u8])],
        config: &[(&str, &[u8])],
        production: bool,
    ) -> (StatusCode, serde_json::Value) {
        self.deploy_everything(project, files, config, &[], production).await
    }

    /// A production deployment with function sources (paths relative to
    /// the project root).
    pub async fn deploy_functions(
        &self,
        project: &str,
        files: &[(&str, &[u8])],
        config: &[(&str, &[u8])],
        functions: &[(&str, &[u8])],
    ) -> (StatusCode, serde_json::Value) {
        self.deploy_everything(project, files, config, functions, true).await
    }

    /// A deployment with function sources beside production (not promoted).
    pub async fn deploy_functions_beside(
        &self,
        project: &str,
        files: &[(&str, &[u8])],
        functions: &[(&str, &[u8])],
    ) -> (StatusCode, serde_json::Value) {
        self.deploy_everything(project, files, &[], functions, false).await
    }

    async fn deploy_everything(
        &self,
        project: &str,
        files: &[(&str, &[u8])],
        config: &[(&str, &[u8])],
        functions: &[(&str, &[u8])],
        production: bool,
    ) -> (StatusCode, serde_json::Value) {
        let table = |list: &[(&str, &[u8])]| -> serde_json::Map<String, serde_json::Value> {
            list.iter().map(|(p, b)| (p.to_string(), helix_core::Digest::of(b).to_hex().into())).collect()
        };
        let body = serde_json::json!({
            "files": table(files), "config": table(config), "functions": table(functions), "production": production,
        });
        let (status, created) =
            self.call(reqwest::Method::POST, &format!("/api/v1/projects/{project}/deployments"), Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = created["id"].as_str().expect("id").to_owned();
        for (_, bytes) in files.iter().chain(config).chain(functions) {
            let digest = helix_core::Digest::of(bytes).to_hex();
            if created["required"].as_array().expect("required").iter().any(|d| d == &digest) {
                let (status, body) = self.put_blob(&id, &digest, bytes).await;
                assert!(status.is_success(), "upload {status}: {body}");
            }
        }
        self.call(reqwest::Method::POST, &format!("/api/v1/deployments/{id}/finalize"), None).await
    }

    /// `PUT /api/v1/deployments/{id}/blobs/{digest}` with `bytes`.
    pub async fn put_blob(&self, id: &str, digest: &str, bytes: &[u8]) -> (StatusCode, serde_json::Value) {
        self.put_blob_as(self.token(), id, digest, bytes).await
    }

    /// [`TestServer::put_blob`] with another token.
    pub async fn put_blob_as(
        &self,
        token: &str,
        id: &str,
        digest: &str,
        bytes: &[u8],
    ) -> (StatusCode, serde_json::Value) {
        let resp = self
            .http
            .put(self.api(&format!("/api/v1/deployments/{id}/blobs/{digest}")))
            .bearer_auth(token)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("API answers");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Waits until the edge's snapshot has `host`.
    pub async fn wait_for_site(&self, host: &str) {
        for _ in 0..500 {
            if self.running.edge.hosts().iter().any(|h| h == host) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the edge never learned about {host}");
    }

    /// Waits until the edge serves `host` (events are applied asynchronously).
    pub async fn wait_for_host(&self, host: &str, pred: impl Fn(&str) -> bool) {
        for _ in 0..200 {
            let resp = self.get_edge(host, "/").await;
            if pred(&resp.text().await.unwrap_or_default()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("edge never served the expected content at {host}");
    }
}

/// Loopback listeners on free ports, SQLite in `data_dir`, no background GC.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::new(data_dir.to_owned());
    config.api.addr = ([127, 0, 0, 1], 0).into();
    config.edge.addr = ([127, 0, 0, 1], 0).into();
    config.api.gc_interval_secs = 0;
    // No spare function instances unless a test asks (each is a node process).
    config.runtime.spares = 0;
    config
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Tests look at redirects themselves; never follow them.
    reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().expect("http client")
}

/// The Postgres server tests may use: `HELIX_TEST_DATABASE_URL`.
pub fn postgres_url() -> Option<String> {
    std::env::var("HELIX_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())
}

/// A fresh, empty Postgres database for one test; `None` (with a note on
/// stderr) when `HELIX_TEST_DATABASE_URL` is not set.
pub async fn fresh_postgres(test: &str) -> Option<String> {
    use sqlx::Connection;
    let Some(admin_url) = postgres_url() else {
        eprintln!("SKIPPED {test} on Postgres: HELIX_TEST_DATABASE_URL is not set");
        return None;
    };
    let name = format!("helix_test_{}", ulid::Ulid::new().to_string().to_ascii_lowercase());
    let mut conn = sqlx::PgConnection::connect(&admin_url).await.expect("connect to HELIX_TEST_DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    // Same server and options, another database name.
    let (url, query) =
        admin_url.split_once('?').map_or((admin_url.as_str(), String::new()), |(u, q)| (u, format!("?{q}")));
    let base = url.rsplit_once('/').map_or(url, |(b, _)| b);
    Some(format!("{base}/{name}{query}"))
}
