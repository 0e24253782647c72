//! The event bus: how planes learn what the control plane decided.
//!
//! [`Bus`] is the interface; [`InProcessBus`] is the embedded adapter that
//! `helix server` uses on one machine (a NATS JetStream adapter takes the same
//! place in a fleet). Publishing never blocks on a slow subscriber. This crate
//! knows events, not who produces or consumes them.

use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use helix_core::build::{BuildId, BuildJob, BuildOutcome};
use helix_core::events::Event;
use tokio::sync::mpsc;

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

/// Publish events and subscribe to all of them, in publish order.
pub trait Bus: Send + Sync + 'static {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), BusError>>;
    fn subscribe(&self) -> Subscription;
}

/// A stream of events, from the moment of subscribing.
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Subscription {
    /// The next event, or `None` once the bus is gone.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

/// Fan-out to in-process subscribers over unbounded channels: events are
/// rare (one per deploy or pointer move) and must never be dropped, so no
/// subscriber can lag out of the stream.
#[derive(Default, Clone)]
pub struct InProcessBus {
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<Event>>>>,
}

impl InProcessBus {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Bus for InProcessBus {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), BusError>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use helix_core::{DeploymentId, Digest, ProjectName};

    #[tokio::test]
    async fn every_subscriber_sees_every_event_in_order() {
        let bus = InProcessBus::new();
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        let events: Vec<Event> = (0..3)
            .map(|i| Event::DeployReady {
                project: ProjectName::parse("p").unwrap(),
                deployment: DeploymentId::generate(i, i as u128),
                manifest: Digest::of(&[i as u8]),
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
}
