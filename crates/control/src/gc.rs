//! Garbage collection of blobs that no deployment references.
//!
//! Live: every blob named by a ready deployment's manifest (files and their
//! variants) and the manifest itself, and every file of a deployment still
//! uploading. Uploads never finalized within `abandon_after` are marked
//! failed first. A blob younger than `grace` is kept whatever it is, so a
//! blob written a moment ago for a deploy in flight is never taken.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use helix_core::api::GcReport;
use helix_core::manifest::Manifest;

use crate::ControlPlane;
use crate::problem::ApiError;

#[derive(Clone, Copy, Debug)]
pub struct GcSettings {
    /// How often the background collector runs; `None` turns it off.
    pub interval: Option<Duration>,
    pub grace: Duration,
    pub abandon_after: Duration,
}

impl Default for GcSettings {
    fn default() -> Self {
        GcSettings {
            interval: Some(Duration::from_secs(3600)),
            grace: Duration::from_secs(3600),
            abandon_after: Duration::from_secs(24 * 3600),
        }
    }
}

pub(crate) async fn periodic(cp: Arc<ControlPlane>) {
    let Some(every) = cp.gc.interval else { return };
    loop {
        tokio::time::sleep(every).await;
        match cp.collect_garbage().await {
            Ok(r) => tracing::info!(blobs = r.blobs_deleted, bytes = r.bytes_freed, "gc done"),
            Err(e) => tracing::warn!(error = %e, "gc failed; will retry"),
        }
    }
}

impl ControlPlane {
    pub(crate) async fn collect_garbage(&self) -> Result<GcReport, ApiError> {
        let _exclusive = self.gc_lock.write().await;
        let now = crate::now_ms();
        let abandoned = self.store.abandon_uploads_before(now - self.gc.abandon_after.as_millis() as i64).await?;
        let (manifests, uploading) = self.store.live_references().await?;
        let mut live: HashSet<_> = uploading.into_iter().collect();
        for digest in manifests {
            live.insert(digest);
            let bytes = self.blobs.get(digest).await?;
            let manifest =
                Manifest::from_json(&bytes).map_err(|e| ApiError::Internal(format!("manifest {digest}: {e}")))?;
            live.extend(manifest.blob_digests());
        }
        let cutoff = now / 1000 - self.gc.grace.as_secs() as i64;
        let mut report = GcReport { abandoned_deployments: abandoned, ..GcReport::default() };
        for digest in self.blobs.list().await? {
            if live.contains(&digest) {
                continue;
            }
            let Some(info) = self.blobs.stat(digest).await? else { continue };
            if info.modified_unix > cutoff {
                continue;
            }
            self.blobs.delete(digest).await?;
            self.store.forget_variant(digest).await?;
            report.blobs_deleted += 1;
            report.bytes_freed += info.size;
        }
        Ok(report)
    }
}
