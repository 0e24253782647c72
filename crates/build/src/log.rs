//! A build's log: each line timestamped, numbered, with secret values
//! masked, capped in total size (the rest is dropped and the log marked
//! truncated), and handed to the host in batches as it is written.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::BuildHost;
use helix_core::build::BuildId;

/// How long a line may wait before the batch it is in is flushed.
const FLUSH_EVERY: Duration = Duration::from_millis(150);

/// What stands in for a secret value.
const MASK: &str = "********";

/// A line as stored: sequence number, Unix ms, text.
pub type Line = (i64, i64, String);

/// Cheap to clone; every clone writes to the same log.
#[derive(Clone)]
pub struct LogSink {
    inner: Arc<Inner>,
}

struct Inner {
    state: Arc<Mutex<State>>,
    tx: mpsc::UnboundedSender<Line>,
    secrets: Vec<String>,
    max_bytes: u64,
}

struct State {
    seq: i64,
    bytes: u64,
    truncated: bool,
}

/// The task that writes batches; awaited by [`LogSink::close`].
pub struct Flusher {
    task: tokio::task::JoinHandle<()>,
}

impl LogSink {
    /// A log for `build` of at most `max_bytes`, masking `secrets`, whose
    /// lines follow line `after_seq` (an earlier attempt's last).
    pub fn open(
        host: Arc<dyn BuildHost>,
        build: BuildId,
        secrets: Vec<String>,
        max_bytes: u64,
        after_seq: i64,
    ) -> (LogSink, Flusher) {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = LogSink {
            inner: Arc::new(Inner {
                state: Arc::new(Mutex::new(State { seq: after_seq, bytes: 0, truncated: false })),
                tx,
                // Short values would mask ordinary words.
                secrets: secrets.into_iter().filter(|s| s.len() >= 4).collect(),
                max_bytes,
            }),
        };
        let state = sink.inner.state.clone();
        let task = tokio::spawn(flush(host, build, rx, state));
        (sink, Flusher { task })
    }

    /// `text` with the secret values masked, for messages that leave the
    /// build by another way than the log (its error).
    pub fn mask(&self, text: &str) -> String {
        mask(text, &self.inner.secrets)
    }

    /// Whether the log is full: further lines are dropped.
    pub fn is_full(&self) -> bool {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner()).truncated
    }

    /// Appends one line (without its newline).
    pub fn line(&self, text: &str) {
        let text = mask(text.trim_end_matches('\r'), &self.inner.secrets);
        let at_ms = now_ms();
        let mut st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.truncated {
            return;
        }
        let len = text.len() as u64 + 1;
        if st.bytes + len > self.inner.max_bytes {
            st.truncated = true;
            st.seq += 1;
            let note =
                format!("[log truncated: over {} bytes; the rest of the output was dropped]", self.inner.max_bytes);
            let _ = self.inner.tx.send((st.seq, at_ms, note));
            return;
        }
        st.bytes += len;
        st.seq += 1;
        let _ = self.inner.tx.send((st.seq, at_ms, text));
    }
}

impl Flusher {
    /// Waits until every line written so far is with the host. All
    /// [`LogSink`] clones must be dropped first.
    pub async fn close(self) {
        let _ = self.task.await;
    }
}

async fn flush(
    host: Arc<dyn BuildHost>,
    build: BuildId,
    mut rx: mpsc::UnboundedReceiver<Line>,
    state: Arc<Mutex<State>>,
) {
    let totals = || {
        let st = state.lock().unwrap_or_else(|p| p.into_inner());
        (st.bytes, st.truncated)
    };
    let mut batch = Vec::new();
    loop {
        let first = rx.recv().await;
        let Some(first) = first else { break };
        batch.push(first);
        let until = tokio::time::Instant::now() + FLUSH_EVERY;
        while batch.len() < 500 {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(line)) => batch.push(line),
                Ok(None) | Err(_) => break,
            }
        }
        let (bytes, truncated) = totals();
        if let Err(e) = host.append_log(&build, std::mem::take(&mut batch), bytes, truncated).await {
            tracing::warn!(%build, error = %e, "could not store build log lines");
        }
    }
}

/// `text` with every secret value replaced by [`MASK`].
fn mask(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for s in secrets {
        if text.contains(s.as_str()) {
            text = text.replace(s.as_str(), MASK);
        }
    }
    text
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_masked_wherever_they_appear() {
        let secrets = vec!["ghp_abc123".to_owned(), "hunter22".to_owned()];
        assert_eq!(
            mask("token=ghp_abc123 and again ghp_abc123, pw hunter22", &secrets),
            "token=******** and again ********, pw ********"
        );
        assert_eq!(mask("nothing here", &secrets), "nothing here");
    }
}
