//! Function logs: every line an instance writes, tagged with the request
//! it belongs to, its deployment and function; kept in a bounded buffer
//! per server and followable live.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

/// Lines kept (the oldest go first).
const KEEP: usize = 50_000;

/// Whose instance wrote a line.
#[derive(Clone, Debug)]
pub struct Owner {
    pub project: String,
    pub deployment: String,
    pub function: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
    /// Written by the runtime: a timeout, a crash, a cold start.
    System,
}

#[derive(Clone, Debug, Serialize)]
pub struct LogRecord {
    pub seq: u64,
    pub ts_ms: i64,
    pub project: String,
    pub deployment: String,
    pub function: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub request_id: String,
    pub stream: Stream,
    pub line: String,
}

/// What to read.
#[derive(Clone, Debug, Default)]
pub struct LogQuery {
    pub project: String,
    pub function: Option<String>,
    pub deployment: Option<String>,
    /// Only records after this sequence number.
    pub after: u64,
}

impl LogQuery {
    pub fn matches(&self, r: &LogRecord) -> bool {
        r.project == self.project
            && r.seq > self.after
            && self.function.as_ref().is_none_or(|f| *f == r.function)
            && self.deployment.as_ref().is_none_or(|d| *d == r.deployment)
    }
}

#[derive(Clone)]
pub struct Logs {
    inner: Arc<Mutex<(u64, VecDeque<LogRecord>)>>,
    live: broadcast::Sender<LogRecord>,
}

impl Default for Logs {
    fn default() -> Self {
        Logs { inner: Arc::default(), live: broadcast::channel(65_536).0 }
    }
}

impl Logs {
    pub fn push(&self, owner: &Owner, request: &str, stream: Stream, line: String) {
        // Lines are capped like build log lines.
        let line = if line.len() > 8192 {
            let mut cut = 8192;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{} [line cut]", &line[..cut])
        } else {
            line
        };
        let record = {
            let mut inner = self.inner.lock().expect("logs");
            inner.0 += 1;
            let record = LogRecord {
                seq: inner.0,
                ts_ms: now_ms(),
                project: owner.project.clone(),
                deployment: owner.deployment.clone(),
                function: owner.function.clone(),
                request_id: request.to_owned(),
                stream,
                line,
            };
            if inner.1.len() == KEEP {
                inner.1.pop_front();
            }
            inner.1.push_back(record.clone());
            record
        };
        let _ = self.live.send(record);
    }

    /// The records kept that `q` matches, oldest first, at most `limit`
    /// (the newest ones).
    pub fn read(&self, q: &LogQuery, limit: usize) -> Vec<LogRecord> {
        let inner = self.inner.lock().expect("logs");
        let mut out: Vec<LogRecord> = inner.1.iter().rev().filter(|r| q.matches(r)).take(limit).cloned().collect();
        out.reverse();
        out
    }

    /// Every record from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LogRecord> {
        self.live.subscribe()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
