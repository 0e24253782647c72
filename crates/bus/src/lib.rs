//! The event bus: how planes learn what the control plane decided, and how
//! the control plane learns they did.
//!
//! [`Bus`] is the interface; [`InProcessBus`] is the embedded adapter that
//! `helix server` uses on one machine (a NATS JetStream adapter takes the same
//! place in a fleet). Publishing never blocks on a slow subscriber.
//! [`Applied`] is the way back: each edge reports the last event sequence
//! number it applied, and a writer waits until the edges it knows have
//! applied its change ([`EdgeAcks`] for edges in this process; edges
//! elsewhere will report the same numbers over the bus). This crate knows
//! events, not who produces or consumes them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use helix_core::build::{BuildId, BuildJob, BuildOutcome};
use helix_core::events::Envelope;
use tokio::sync::{mpsc, watch};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus is closed")]
    Closed,
    #[error("job queue: {0}")]
    Backend(String),
}

/// A `build.requested` job a worker holds, with which attempt this is.
#[derive(Clone, Debug)]
pub struct ClaimedJob {
    pub job: BuildJob,
    pub attempt: u32,
}

/// Whether the job a worker holds is still wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    Wanted,
    /// Canceled (by a user or a newer push): stop and report nothing.
    Canceled,
}

/// The durable queue of `build.requested` jobs: a claimed job is held by a
/// lease the worker renews; a worker that dies lets the lease run out and
/// the job goes back to the queue. Ack with [`JobQueue::complete`], or
/// [`JobQueue::retry`] after an infrastructure failure.
pub trait JobQueue: Send + Sync + 'static {
    /// The oldest job no one holds, now held by the caller.
    fn claim(&self) -> BoxFuture<'_, Result<Option<ClaimedJob>, BusError>>;
    /// Renews the caller's lease on `attempt` and says whether to go on
    /// (an attempt taken over by another worker is `Canceled` for this one).
    fn heartbeat<'a>(&'a self, build: &'a BuildId, attempt: u32) -> BoxFuture<'a, Result<JobStatus, BusError>>;
    /// Attempt `attempt` is done, as `outcome` says.
    fn complete<'a>(
        &'a self,
        build: &'a BuildId,
        attempt: u32,
        outcome: &'a BuildOutcome,
    ) -> BoxFuture<'a, Result<(), BusError>>;
    /// Puts the job back after an infrastructure failure in `attempt`;
    /// false when it has had its attempts and failed for good.
    fn retry<'a>(&'a self, build: &'a BuildId, attempt: u32, error: &'a str) -> BoxFuture<'a, Result<bool, BusError>>;
    /// Resolves when new jobs may be waiting (or after a while).
    fn wait(&self) -> BoxFuture<'_, ()>;
}

/// Publish events and subscribe to all of them, in publish order (which
/// is their sequence order).
pub trait Bus: Send + Sync + 'static {
    fn publish<'a>(&'a self, event: &'a Envelope) -> BoxFuture<'a, Result<(), BusError>>;
    fn subscribe(&self) -> Subscription;
}

/// A stream of events, from the moment of subscribing.
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<Envelope>,
}

impl Subscription {
    /// The next event, or `None` once the bus is gone.
    pub async fn next(&mut self) -> Option<Envelope> {
        self.rx.recv().await
    }
}

/// Fan-out to in-process subscribers over unbounded channels: events are
/// rare (one per deploy or pointer move) and must never be dropped, so no
/// subscriber can lag out of the stream.
#[derive(Default, Clone)]
pub struct InProcessBus {
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<Envelope>>>>,
}

impl InProcessBus {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Bus for InProcessBus {
    fn publish<'a>(&'a self, event: &'a Envelope) -> BoxFuture<'a, Result<(), BusError>> {
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|tx| tx.send(event.clone()).is_ok());
        Box::pin(async { Ok(()) })
    }

    fn subscribe(&self) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner()).push(tx);
        Subscription { rx }
    }
}

/// What the edges have applied, for writers that answer only once their
/// change is served.
pub trait Applied: Send + Sync + 'static {
    /// Resolves to true once every edge known has applied event `seq`, or
    /// to false when that has not happened within `timeout`.
    fn wait_for(&self, seq: u64, timeout: Duration) -> BoxFuture<'_, bool>;
}

/// The edges of this process, each reporting through a watch channel the
/// last sequence number it applied.
#[derive(Default)]
pub struct EdgeAcks {
    edges: Mutex<Vec<watch::Receiver<u64>>>,
}

impl EdgeAcks {
    pub fn new() -> Self {
        Self::default()
    }

    /// An edge to wait for, by the channel it reports on.
    pub fn register(&self, applied: watch::Receiver<u64>) {
        self.edges.lock().unwrap_or_else(|p| p.into_inner()).push(applied);
    }
}

impl Applied for EdgeAcks {
    fn wait_for(&self, seq: u64, timeout: Duration) -> BoxFuture<'_, bool> {
        let edges: Vec<watch::Receiver<u64>> = self.edges.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Box::pin(async move {
            let all = async {
                for mut edge in edges {
                    // An edge that is gone does not serve the change.
                    if edge.wait_for(|applied| *applied >= seq).await.is_err() {
                        return false;
                    }
                }
                true
            };
            tokio::time::timeout(timeout, all).await.unwrap_or(false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use helix_core::events::Event;
    use helix_core::{DeploymentId, Digest, ProjectName};

    #[tokio::test]
    async fn every_subscriber_sees_every_event_in_order() {
        let bus = InProcessBus::new();
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        let events: Vec<Envelope> = (0..3)
            .map(|i| {
                Envelope::new(
                    i + 1,
                    Event::DeployReady {
                        project: ProjectName::parse("p").unwrap(),
                        deployment: DeploymentId::generate(i, i as u128),
                        manifest: Digest::of(&[i as u8]),
                    },
                )
            })
            .collect();
        for e in &events {
            bus.publish(e).await.unwrap();
        }
        b.rx.close();
        for e in &events {
            assert_eq!(a.next().await.as_ref(), Some(e));
        }
        // A closed subscriber is dropped from the fan-out, not an error.
        bus.publish(&events[0]).await.unwrap();
        assert_eq!(bus.subscribers.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn writers_wait_until_every_edge_has_applied_their_event() {
        let acks = EdgeAcks::new();
        let (a, a_rx) = watch::channel(0u64);
        let (b, b_rx) = watch::channel(0u64);
        acks.register(a_rx);
        acks.register(b_rx);
        assert!(!acks.wait_for(3, Duration::from_millis(20)).await, "no edge has applied 3");
        a.send_replace(3);
        assert!(!acks.wait_for(3, Duration::from_millis(20)).await, "one edge lags");
        let waiter = tokio::spawn(async move { acks.wait_for(3, Duration::from_secs(5)).await });
        b.send_replace(4);
        assert!(waiter.await.unwrap());
    }
}
