//! The request log's intake: the finish step hands each record here
//! without waiting (a full queue drops the record and counts it), and one
//! background task writes them out. Today only requests that hit a problem
//! are written (as `tracing` events); the per-request access log and
//! metrics hang on the same hook.

use std::sync::atomic::{AtomicU64, Ordering};

use http::StatusCode;
use tokio::sync::mpsc;

use crate::request::{Problem, RequestCtx};

/// Records waiting to be written; past this, new ones are dropped.
const QUEUE: usize = 4096;

pub(crate) struct RequestLog {
    tx: Option<mpsc::Sender<Record>>,
    /// Records dropped since the writer last said so.
    dropped: std::sync::Arc<AtomicU64>,
}

struct Record {
    request_id: String,
    status: u16,
    deployment: Option<String>,
    project: Option<String>,
    elapsed_us: u64,
    problem: Problem,
}

impl RequestLog {
    /// Starts the writer on the current runtime; without one (a benchmark
    /// evaluating routes alone) records are dropped.
    pub fn start() -> RequestLog {
        let dropped = std::sync::Arc::new(AtomicU64::new(0));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return RequestLog { tx: None, dropped };
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        runtime.spawn(write(rx, dropped.clone()));
        RequestLog { tx: Some(tx), dropped }
    }

    /// Hands the request's record over, never waiting.
    pub fn record(&self, ctx: RequestCtx, status: StatusCode) {
        let RequestCtx { id, started, site, problem, notes, .. } = ctx;
        let problem = match (problem, notes.backtrack_limit) {
            (Some(p), _) => p,
            (None, true) => Problem::BacktrackLimit,
            (None, false) => return,
        };
        let Some(tx) = &self.tx else { return };
        let record = Record {
            request_id: id.to_str().unwrap_or_default().to_owned(),
            status: status.as_u16(),
            deployment: site.as_ref().map(|s| s.deployment.to_string()),
            project: site.as_ref().map(|s| s.project.to_string()),
            elapsed_us: started.elapsed().as_micros() as u64,
            problem,
        };
        if tx.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn write(mut rx: mpsc::Receiver<Record>, dropped: std::sync::Arc<AtomicU64>) {
    while let Some(r) = rx.recv().await {
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            tracing::warn!(records = lost, "the request log fell behind and dropped records");
        }
        let (id, status, deployment, project, us) =
            (r.request_id, r.status, r.deployment.unwrap_or_default(), r.project.unwrap_or_default(), r.elapsed_us);
        match r.problem {
            Problem::SiteUnavailable { error } => {
                tracing::error!(request_id = %id, status, %project, %deployment, %error, "edge cannot load a deployment");
            }
            Problem::BlobUnreadable { digest, error } => {
                tracing::error!(request_id = %id, status, %project, %deployment, %digest, %error, "edge cannot read a blob of a ready deployment");
            }
            Problem::ProxyRefused { url, reason } => {
                tracing::warn!(request_id = %id, status, %project, %deployment, %url, %reason, "proxy rule refused");
            }
            Problem::ProxyFailed { url, error } => {
                tracing::warn!(request_id = %id, status, %project, %deployment, %url, %error, "proxy rule's upstream failed");
            }
            Problem::Loop { hops } => {
                tracing::warn!(request_id = %id, status, hops, "request loop refused (508)");
            }
            Problem::BacktrackLimit => {
                tracing::warn!(request_id = %id, status, %project, %deployment, elapsed_us = us, "a lookaround pattern hit its step limit and did not match");
            }
        }
    }
}
