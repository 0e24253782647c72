//! The outbox relay: publishes committed events in sequence order, queues
//! their webhook deliveries (and a build's commit status), then deletes
//! them. At-least-once: a crash
//! between publish and delete republishes, every consumer skips what it
//! has applied already, and a delivery is queued once per event.

use std::sync::Arc;
use std::time::Duration;

use crate::ControlPlane;

pub(crate) async fn relay(cp: Arc<ControlPlane>) {
    loop {
        match publish_pending(&cp).await {
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "outbox relay: will retry"),
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), cp.outbox_wake.notified()).await;
    }
}

async fn publish_pending(cp: &ControlPlane) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    loop {
        let batch = cp.store.outbox_pending(100).await?;
        if batch.is_empty() {
            return Ok(());
        }
        let mut queued = 0;
        for (id, envelope) in batch {
            cp.bus.publish(&envelope).await?;
            queued += cp.store.webhooks().enqueue_deliveries(&envelope, crate::now_ms()).await?;
            if let helix_core::events::Event::BuildRequested { build, .. }
            | helix_core::events::Event::BuildFinished { build, .. } = &envelope.event
            {
                cp.report_status(build);
            }
            cp.store.outbox_delete(&id).await?;
        }
        if queued > 0 {
            cp.delivery_wake.notify_one();
        }
    }
}
