//! The control plane: the REST API under `/api/v1`, token auth, the deploy
//! protocol (create → upload blobs by digest → finalize), the production
//! pointer, garbage collection and the outbox relay that publishes events.
//!
//! It owns the state store and writes blobs; it never serves site traffic
//! and never calls the edge: the edge learns from the events it publishes.

mod auth;
mod builds;
mod deploy;
mod gc;
mod hooks;
mod outbox;
mod problem;
mod routes;
mod secrets;

use std::sync::Arc;

use helix_artifacts::BlobStore;
use helix_bus::Bus;
use helix_core::hosts::PublicEdge;
use helix_core::limits::Limits;
use helix_core::{DeploymentId, Digest};
use helix_store::Store;

pub use auth::{TokenError, ensure_admin_token, hash_token};
pub use gc::GcSettings;
pub use routes::router;
pub use secrets::{SecretError, SecretKey};

/// How the control plane is set up, besides the backends it is given.
pub struct Settings {
    pub limits: Limits,
    pub gc: GcSettings,
    /// Seals git credentials at rest.
    pub secrets: SecretKey,
    pub build_link: BuildLink,
}

/// What the control plane shares with the build plane: where its API is
/// reached (webhook URLs are printed from it) and how to wake workers
/// when builds are queued.
pub struct BuildLink {
    pub api_url: String,
    pub wake: Arc<tokio::sync::Notify>,
}

/// Everything the control plane needs, shared by its handlers and tasks.
pub struct ControlPlane {
    pub store: Arc<Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub bus: Arc<dyn Bus>,
    pub edge: PublicEdge,
    pub limits: Limits,
    pub gc: GcSettings,
    /// Seals git credentials at rest.
    secrets: SecretKey,
    build_link: BuildLink,
    /// Wakes the outbox relay after a commit that wrote events.
    outbox_wake: tokio::sync::Notify,
    /// Finalize and upload take it shared, GC exclusively: a blob GC is
    /// deciding about is never one a deploy is about to reference.
    gc_lock: Arc<tokio::sync::RwLock<()>>,
    compressor: helix_artifacts::variants::CompressionPool,
    /// Digest sets of deployments being uploaded, weighted by size.
    upload_sets: quick_cache::sync::Cache<DeploymentId, Arc<UploadSet>, DigestSetWeight>,
}

#[derive(Clone)]
struct DigestSetWeight;

/// The digests an uploading deployment may receive, each with whether a
/// file under it is worth precompressing (by content type).
pub(crate) type UploadSet = std::collections::HashMap<Digest, bool>;

impl quick_cache::Weighter<DeploymentId, Arc<UploadSet>> for DigestSetWeight {
    fn weight(&self, _key: &DeploymentId, set: &Arc<UploadSet>) -> u64 {
        set.len() as u64 + 1
    }
}

impl ControlPlane {
    pub fn new(
        store: Arc<Store>,
        blobs: Arc<dyn BlobStore>,
        bus: Arc<dyn Bus>,
        edge: PublicEdge,
        settings: Settings,
    ) -> std::io::Result<Arc<Self>> {
        let Settings { limits, gc, secrets, build_link } = settings;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Arc::new(ControlPlane {
            compressor: helix_artifacts::variants::CompressionPool::new(cores)?,
            store,
            blobs,
            bus,
            edge,
            limits,
            gc,
            secrets,
            build_link,
            outbox_wake: tokio::sync::Notify::new(),
            gc_lock: Arc::new(tokio::sync::RwLock::new(())),
            // About 40 bytes a digest: at most ~40 MB of sets in memory.
            upload_sets: quick_cache::sync::Cache::with_weighter(64, 1_000_000, DigestSetWeight),
        }))
    }

    /// Runs the outbox relay until the process ends.
    pub fn spawn_outbox_relay(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(outbox::relay(self.clone()))
    }

    /// Runs GC on its interval until the process ends.
    pub fn spawn_gc(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(gc::periodic(self.clone()))
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
