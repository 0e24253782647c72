//! The control plane: the REST API under `/api/v1`, token auth, the deploy
//! protocol (create → upload blobs by digest → finalize), the production
//! pointer, garbage collection and the outbox relay that publishes events.
//!
//! It owns the state store and writes blobs; it never serves site traffic
//! and never calls the edge: the edge learns from the events it publishes.

mod access;
mod audit;
mod auth;
mod builds;
mod deploy;
mod domains;
mod env;
mod functions;
mod gc;
mod graphql;
pub mod hooks;
mod identity;
mod openapi;
mod outbox;
mod pointers;
pub mod policy;
mod problem;
mod rate;
mod routes;
mod secrets;
mod statuses;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use helix_artifacts::BlobStore;
use helix_bus::{Applied, Bus};
use helix_core::api::Propagation;
use helix_core::hosts::PublicEdge;
use helix_core::limits::Limits;
use helix_core::{DeploymentId, Digest};
use helix_store::Store;

pub use access::Need;
pub use auth::{TokenError, ensure_admin_token, hash_token};
pub use deploy::check_create_body;
pub use env::Reader;
pub use gc::GcSettings;
pub use helix_http::ListenerSettings;
pub use routes::{RouteSpec, Scope, route_table, router};
pub use secrets::{Keyring, SecretError, SecretKey};
pub use webhooks::{DeliverySettings, signature as webhook_signature};

/// Everything the API can be told; `helix server` flattens it into its
/// flags.
#[derive(Clone, Debug, clap::Args)]
pub struct ApiSettings {
    /// Where the API listens.
    #[arg(
        id = "api_addr",
        value_name = "ADDR",
        long = "api-addr",
        env = "HELIX_API_ADDR",
        default_value = "127.0.0.1:7070"
    )]
    pub addr: SocketAddr,
    #[arg(long, env = "HELIX_MAX_FILE_BYTES", default_value_t = Limits::default().max_file_bytes)]
    pub max_file_bytes: u64,
    #[arg(long, env = "HELIX_MAX_FILES", default_value_t = Limits::default().max_files)]
    pub max_files: usize,
    #[arg(long, env = "HELIX_MAX_TOTAL_BYTES", default_value_t = Limits::default().max_total_bytes)]
    pub max_total_bytes: u64,
    /// Seconds between background GC runs; 0 turns it off.
    #[arg(long, env = "HELIX_GC_INTERVAL_SECS", default_value_t = 3600)]
    pub gc_interval_secs: u64,
    /// GC keeps unreferenced blobs younger than this.
    #[arg(long, env = "HELIX_GC_GRACE_SECS", default_value_t = 3600)]
    pub gc_grace_secs: u64,
    /// How long a change (deploy, promote, rollback, split) waits for the
    /// edges to serve it; past it the answer is `202` with `served: false`.
    #[arg(long = "edge-ack-timeout-ms", env = "HELIX_EDGE_ACK_TIMEOUT_MS", default_value_t = 5_000)]
    pub edge_ack_timeout_ms: u64,
    /// Bytes of webhook bodies not yet verified that may be in memory at
    /// once, over all deliveries; past it deliveries wait, then get `503`.
    #[arg(long = "hook-inflight-bytes", env = "HELIX_HOOK_INFLIGHT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub hook_inflight_bytes: u64,
    /// Open API connections at most (0: derived from the file-descriptor
    /// limit); past it the oldest idle one is closed, or the new one
    /// refused with 503.
    #[arg(
        id = "api_max_connections",
        value_name = "N",
        long = "api-max-connections",
        env = "HELIX_API_MAX_CONNECTIONS",
        default_value_t = 0
    )]
    pub max_connections: usize,
    /// A client must send a request's headers within this (an idle
    /// HTTP/1.1 keep-alive connection is closed after it too).
    #[arg(
        id = "api_header_timeout_ms",
        value_name = "MS",
        long = "api-header-timeout-ms",
        env = "HELIX_API_HEADER_TIMEOUT_MS",
        default_value_t = helix_http::DEFAULT_HEADER_TIMEOUT_MS
    )]
    pub header_timeout_ms: u64,
    /// A connection on which nothing moves is closed after this.
    #[arg(
        id = "api_idle_timeout_ms",
        value_name = "MS",
        long = "api-idle-timeout-ms",
        env = "HELIX_API_IDLE_TIMEOUT_MS",
        default_value_t = helix_http::DEFAULT_IDLE_TIMEOUT_MS
    )]
    pub idle_timeout_ms: u64,
    /// Requests a second each token may make (sustained; 0: no limit);
    /// past it the API answers 429 with Retry-After. Blob uploads do not
    /// count.
    #[arg(long = "api-rate", env = "HELIX_API_RATE", default_value_t = 100)]
    pub rate_per_token: u32,
    /// Requests a token may make at once above its rate.
    #[arg(long = "api-burst", env = "HELIX_API_BURST", default_value_t = 1000)]
    pub burst_per_token: u32,
    /// Outgoing webhooks: the wait after a failed delivery, doubled after
    /// each further failure (at most an hour).
    #[arg(long = "webhook-retry-base-ms", env = "HELIX_WEBHOOK_RETRY_BASE_MS", default_value_t = 5_000)]
    pub webhook_retry_base_ms: u64,
    /// Outgoing webhooks: attempts before a delivery is given up.
    #[arg(long = "webhook-max-attempts", env = "HELIX_WEBHOOK_MAX_ATTEMPTS", default_value_t = 8)]
    pub webhook_max_attempts: u32,
    /// Internal networks (CIDR) or hosts outgoing webhooks and commit
    /// statuses may reach (comma-separated); by default none of this machine's or private
    /// addresses.
    #[arg(long = "webhook-allow", env = "HELIX_WEBHOOK_ALLOW", value_delimiter = ',')]
    pub webhook_allow: Vec<String>,
    /// The DNS server (`IP:PORT`) custom domains are verified through;
    /// the system's resolver by default.
    #[arg(long = "dns-server", env = "HELIX_DNS_SERVER", value_name = "IP:PORT")]
    pub dns_server: Option<SocketAddr>,
    /// Seconds between background checks of a pending domain's proof in
    /// its first hour (ten times as long after, for a week); 0: only
    /// `helix domains verify` checks.
    #[arg(long = "domain-recheck-secs", env = "HELIX_DOMAIN_RECHECK_SECS", default_value_t = 60)]
    pub domain_recheck_secs: u64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        let limits = Limits::default();
        ApiSettings {
            addr: ([127, 0, 0, 1], 7070).into(),
            max_file_bytes: limits.max_file_bytes,
            max_files: limits.max_files,
            max_total_bytes: limits.max_total_bytes,
            gc_interval_secs: 3600,
            gc_grace_secs: 3600,
            edge_ack_timeout_ms: 5_000,
            hook_inflight_bytes: 64 * 1024 * 1024,
            max_connections: 0,
            header_timeout_ms: helix_http::DEFAULT_HEADER_TIMEOUT_MS,
            idle_timeout_ms: helix_http::DEFAULT_IDLE_TIMEOUT_MS,
            rate_per_token: 100,
            burst_per_token: 1000,
            webhook_retry_base_ms: 5_000,
            webhook_max_attempts: 8,
            webhook_allow: Vec::new(),
            dns_server: None,
            domain_recheck_secs: 60,
        }
    }
}

/// The share of the descriptor limit the API's connections may take when
/// no cap is set.
const API_FD_SHARE_PERCENT: u64 = 10;

impl ApiSettings {
    pub fn limits(&self) -> Limits {
        Limits { max_file_bytes: self.max_file_bytes, max_files: self.max_files, max_total_bytes: self.max_total_bytes }
    }

    pub fn gc(&self) -> GcSettings {
        GcSettings {
            interval: (self.gc_interval_secs > 0).then(|| Duration::from_secs(self.gc_interval_secs)),
            grace: Duration::from_secs(self.gc_grace_secs),
            ..GcSettings::default()
        }
    }

    pub fn delivery(&self) -> DeliverySettings {
        DeliverySettings {
            retry_base: Duration::from_millis(self.webhook_retry_base_ms.max(1)),
            max_attempts: i64::from(self.webhook_max_attempts.max(1)),
            allow: self.webhook_allow.clone(),
            ..DeliverySettings::default()
        }
    }

    pub fn listener(&self) -> helix_http::ListenerSettings {
        let (header, idle) = (self.header_timeout_ms, self.idle_timeout_ms);
        helix_http::ListenerSettings::new("api", self.max_connections, API_FD_SHARE_PERCENT, header, idle)
    }
}

/// How the control plane is set up, besides the backends it is given.
pub struct Settings {
    pub api: ApiSettings,
    /// The master keys: seal git credentials and wrap projects' data keys.
    pub secrets: Keyring,
    pub build_link: BuildLink,
    /// What the edges have applied (changes answer once they serve them).
    pub applied: Arc<dyn Applied>,
    /// Where function code is bundled (scratch and per-project npm caches).
    pub functions_dir: std::path::PathBuf,
    /// The runtime plane of this server: function logs and counters.
    pub runtime: helix_runtime::Runtime,
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
    /// The master keys: seal git credentials and wrap projects' data keys.
    secrets: Keyring,
    /// Sealing under a master key takes it shared; a rotation, exclusively.
    rotation: tokio::sync::RwLock<()>,
    /// Organisations' compiled policy modules.
    policies: policy::PolicyCache,
    delivery: DeliverySettings,
    /// Where domain verification looks names up (`None`: the system's
    /// resolver).
    dns_server: Option<SocketAddr>,
    /// How often pending domains are checked in the background (`None`:
    /// never).
    domain_recheck: Option<Duration>,
    pub(crate) rate: rate::RateLimiter,
    /// When tokens' last use was written.
    pub(crate) touched: auth::Touched,
    /// Wakes the webhook deliverer when the relay queued deliveries.
    delivery_wake: tokio::sync::Notify,
    /// Builds whose commit status is to be posted.
    statuses: statuses::StatusQueue,
    /// The GraphQL schema over the operations.
    graphql: graphql::HelixSchema,
    build_link: BuildLink,
    /// Wakes the outbox relay after a commit that wrote events.
    outbox_wake: tokio::sync::Notify,
    applied: Arc<dyn Applied>,
    pub(crate) functions_dir: std::path::PathBuf,
    pub(crate) runtime: helix_runtime::Runtime,
    ack_timeout: Duration,
    /// Bytes of unverified webhook bodies in memory, bounded (in units of
    /// `hooks::BUDGET_UNIT`).
    hook_budget: Arc<tokio::sync::Semaphore>,
    hook_budget_units: u32,
    /// Finalize and upload take it shared, GC exclusively: a blob GC is
    /// deciding about is never one a deploy is about to reference.
    gc_lock: Arc<tokio::sync::RwLock<()>>,
    compressor: helix_artifacts::variants::CompressionPool,
    /// Digest sets of deployments being uploaded, weighted by size.
    upload_sets: quick_cache::sync::Cache<DeploymentId, Arc<UploadSet>, DigestSetWeight>,
    /// Manifest digest → its schedules (for `cron.change` decisions).
    schedules: quick_cache::sync::Cache<Digest, functions::Schedules>,
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
        let Settings { api, secrets, build_link, applied, functions_dir, runtime } = settings;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let hook_permits = (api.hook_inflight_bytes / hooks::BUDGET_UNIT).clamp(1, u64::from(u32::MAX >> 4)) as u32;
        Ok(Arc::new(ControlPlane {
            compressor: helix_artifacts::variants::CompressionPool::new(cores)?,
            store,
            blobs,
            bus,
            edge,
            limits: api.limits(),
            gc: api.gc(),
            secrets,
            rotation: tokio::sync::RwLock::new(()),
            policies: policy::PolicyCache::new(),
            delivery: api.delivery(),
            dns_server: api.dns_server,
            domain_recheck: (api.domain_recheck_secs > 0).then(|| Duration::from_secs(api.domain_recheck_secs)),
            rate: rate::RateLimiter::new(api.rate_per_token, api.burst_per_token),
            touched: auth::Touched::default(),
            delivery_wake: tokio::sync::Notify::new(),
            statuses: statuses::StatusQueue::new(),
            graphql: graphql::schema(),
            build_link,
            outbox_wake: tokio::sync::Notify::new(),
            applied,
            functions_dir,
            runtime,
            ack_timeout: Duration::from_millis(api.edge_ack_timeout_ms),
            hook_budget: Arc::new(tokio::sync::Semaphore::new(hook_permits as usize)),
            hook_budget_units: hook_permits,
            gc_lock: Arc::new(tokio::sync::RwLock::new(())),
            // About 40 bytes a digest: at most ~40 MB of sets in memory.
            upload_sets: quick_cache::sync::Cache::with_weighter(64, 1_000_000, DigestSetWeight),
            schedules: quick_cache::sync::Cache::new(4096),
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

    /// After a change committed with event `seq` (`None`: a no-op change;
    /// then the newest event): wakes the outbox relay and waits, at most
    /// the ack timeout, until the edges serve it.
    pub(crate) async fn committed(&self, seq: Option<u64>) -> Result<Propagation, helix_store::StoreError> {
        let seq = match seq {
            Some(seq) => seq,
            None => self.store.event_seq().await?,
        };
        self.outbox_wake.notify_one();
        let started = Instant::now();
        let served = self.applied.wait_for(seq, self.ack_timeout).await;
        let detail = (!served).then(|| {
            format!(
                "committed, but the edge has not confirmed serving it within {} ms; it will once it catches up",
                self.ack_timeout.as_millis()
            )
        });
        Ok(Propagation { served, seq, waited_ms: started.elapsed().as_millis() as u64, detail })
    }

    /// Wakes the outbox relay after a commit whose events no one waits for.
    pub(crate) fn publish_soon(&self) {
        self.outbox_wake.notify_one();
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
