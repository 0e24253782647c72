//! The edge: the HTTP front that serves deployments to visitors.
//!
//! A request is one lifecycle (`request.rs`, chart in
//! `docs/edge-phases.md`): `accept` → `resolve_host` (the host map) →
//! `load_site` (from memory, or loaded now within a memory budget) →
//! `route` (the compiled, platform-neutral route table) → `respond`
//! (static file, redirect, proxy) → `finish` (request id, log). What
//! hostnames serve comes from events, applied in sequence order; the edge
//! reports the last sequence number it applied, so writers can answer once
//! their change is served. Bytes come from the blob store through a cache
//! of hot blobs. The edge never reads the state store, never blocks a
//! request on a lock held across I/O, and never logs on the request path.

mod compress;
mod files;
pub mod geoip;
mod hosts;
mod invoke;
mod log;
mod proxy;
mod request;
mod roles;
pub mod route;
mod server;
pub mod sites;
mod static_files;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use helix_artifacts::BlobStore;
use helix_bus::Subscription;
use helix_core::Digest;
use helix_core::events::{Envelope, Event};
use tokio::sync::watch;

pub use hosts::{SiteRef, Split, Target};
pub use invoke::{FunctionBody, FunctionCall, FunctionResponseBody, Invoker};
pub use proxy::{ClientAddr, MAX_HOPS, ProxySettings};
pub use request::{EdgeBody, SPLIT_COOKIE, SPLIT_HEADER};
pub use server::serve;

/// Bytes of hot blobs kept in memory, by default.
pub const DEFAULT_BLOB_CACHE_BYTES: u64 = 256 * 1024 * 1024;
/// Memory for loaded sites (file tables, compiled routes), by default.
pub const DEFAULT_SITE_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// Everything an edge can be told; `helix server` flattens it into its
/// flags.
#[derive(Clone, Debug, clap::Args)]
pub struct EdgeSettings {
    /// Where the edge listens for visitors.
    #[arg(
        id = "edge_addr",
        value_name = "ADDR",
        long = "edge-addr",
        env = "HELIX_EDGE_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub addr: SocketAddr,
    /// Bytes of hot file blobs kept in memory.
    #[arg(long = "edge-cache-bytes", env = "HELIX_EDGE_CACHE_BYTES", default_value_t = DEFAULT_BLOB_CACHE_BYTES)]
    pub cache_bytes: u64,
    /// Files up to this size are cached whole; larger ones are streamed.
    #[arg(skip = 4u64 * 1024 * 1024)]
    pub cache_max_blob_bytes: u64,
    /// Memory for loaded sites (file tables and compiled route tables);
    /// the least recently used are dropped past it and load again on their
    /// next request. Must exceed the largest site.
    #[arg(long = "edge-site-cache-bytes", env = "HELIX_EDGE_SITE_CACHE_BYTES", default_value_t = DEFAULT_SITE_CACHE_BYTES)]
    pub site_cache_bytes: u64,
    /// A trusted request header carrying the visitor's ISO country code
    /// (set by your CDN or load balancer), for `Country=` rules.
    #[arg(long, env = "HELIX_COUNTRY_HEADER")]
    pub country_header: Option<String>,
    /// The HS256 secret your identity provider signs `nf_jwt` with, for
    /// Netlify `Role=` rules (without it they never apply).
    #[arg(long, env = "HELIX_ROLE_JWT_SECRET", hide_env_values = true)]
    pub role_jwt_secret: Option<String>,
    /// A MaxMind database (`.mmdb`, Country or City) for visitors'
    /// countries when no trusted header says it.
    #[arg(long, env = "HELIX_GEOIP_DB")]
    pub geoip_db: Option<PathBuf>,
    #[command(flatten)]
    pub proxy: ProxySettings,
    #[command(flatten)]
    pub connections: EdgeConnections,
}

/// The edge listener's connection limits.
#[derive(Clone, Debug, clap::Args)]
pub struct EdgeConnections {
    /// Open connections at most (0: derived from the file-descriptor
    /// limit); past it the oldest idle one is closed, or the new one
    /// refused with 503.
    #[arg(
        id = "edge_max_connections",
        value_name = "N",
        long = "edge-max-connections",
        env = "HELIX_EDGE_MAX_CONNECTIONS",
        default_value_t = 0
    )]
    pub max_connections: usize,
    /// A client must send a request's headers within this (an idle
    /// HTTP/1.1 keep-alive connection is closed after it too).
    #[arg(
        id = "edge_header_timeout_ms",
        value_name = "MS",
        long = "edge-header-timeout-ms",
        env = "HELIX_EDGE_HEADER_TIMEOUT_MS",
        default_value_t = helix_http::DEFAULT_HEADER_TIMEOUT_MS
    )]
    pub header_timeout_ms: u64,
    /// A connection on which nothing moves is closed after this.
    #[arg(
        id = "edge_idle_timeout_ms",
        value_name = "MS",
        long = "edge-idle-timeout-ms",
        env = "HELIX_EDGE_IDLE_TIMEOUT_MS",
        default_value_t = helix_http::DEFAULT_IDLE_TIMEOUT_MS
    )]
    pub idle_timeout_ms: u64,
}

impl EdgeConnections {
    pub fn listener(&self, name: &'static str, auto_share_percent: u64) -> helix_http::ListenerSettings {
        let (header, idle) = (self.header_timeout_ms, self.idle_timeout_ms);
        helix_http::ListenerSettings::new(name, self.max_connections, auto_share_percent, header, idle)
    }
}

impl Default for EdgeConnections {
    fn default() -> Self {
        EdgeConnections {
            max_connections: 0,
            header_timeout_ms: helix_http::DEFAULT_HEADER_TIMEOUT_MS,
            idle_timeout_ms: helix_http::DEFAULT_IDLE_TIMEOUT_MS,
        }
    }
}

impl Default for EdgeSettings {
    fn default() -> Self {
        EdgeSettings {
            addr: ([127, 0, 0, 1], 8080).into(),
            cache_bytes: DEFAULT_BLOB_CACHE_BYTES,
            cache_max_blob_bytes: 4 * 1024 * 1024,
            site_cache_bytes: DEFAULT_SITE_CACHE_BYTES,
            country_header: None,
            role_jwt_secret: None,
            geoip_db: None,
            proxy: ProxySettings::default(),
            connections: EdgeConnections::default(),
        }
    }
}

#[derive(Clone)]
struct BlobWeight;

impl quick_cache::Weighter<Digest, Bytes> for BlobWeight {
    fn weight(&self, _key: &Digest, val: &Bytes) -> u64 {
        val.len() as u64 + 64
    }
}

pub struct Edge {
    config: EdgeSettings,
    country_header: Option<http::HeaderName>,
    geoip: Option<geoip::GeoIp>,
    hosts: hosts::Hosts,
    sites: sites::Sites,
    /// The last event sequence number applied; writers wait on it.
    applied: watch::Sender<u64>,
    /// Event application is one writer at a time, in sequence order.
    apply_lock: tokio::sync::Mutex<()>,
    blobs: Arc<dyn BlobStore>,
    cache: quick_cache::sync::Cache<Digest, Bytes, BlobWeight>,
    request_ids: RequestIds,
    proxy: proxy::Proxy,
    draws: Draws,
    log: log::RequestLog,
    /// The runtime plane, when functions run here.
    invoker: std::sync::OnceLock<Arc<dyn invoke::Invoker>>,
}

/// Why an edge could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("country header {0:?} is not a valid header name")]
    CountryHeader(String),
    #[error("{0}")]
    GeoIp(String),
    #[error("{0}")]
    Proxy(String),
}

impl Edge {
    pub fn new(config: EdgeSettings, base_domain: &str, blobs: Arc<dyn BlobStore>) -> Result<Arc<Edge>, EdgeError> {
        let country_header = match &config.country_header {
            Some(name) => Some(
                http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| EdgeError::CountryHeader(name.clone()))?,
            ),
            None => None,
        };
        let geoip = match &config.geoip_db {
            Some(path) => Some(geoip::GeoIp::open(path).map_err(EdgeError::GeoIp)?),
            None => None,
        };
        let proxy = proxy::Proxy::new(config.proxy.clone()).map_err(EdgeError::Proxy)?;
        let items = (config.cache_bytes / 8192).max(16) as usize;
        Ok(Arc::new(Edge {
            proxy,
            country_header,
            geoip,
            cache: quick_cache::sync::Cache::with_weighter(items, config.cache_bytes, BlobWeight),
            hosts: hosts::Hosts::new(base_domain.to_owned()),
            sites: sites::Sites::new(config.site_cache_bytes, blobs.clone()),
            applied: watch::Sender::new(0),
            apply_lock: tokio::sync::Mutex::new(()),
            config,
            blobs,
            request_ids: RequestIds::new(),
            draws: Draws::new(),
            log: log::RequestLog::start(),
            invoker: std::sync::OnceLock::new(),
        }))
    }

    /// Applies what the state store says is served now, as of event
    /// sequence number `seq` (events up to it are then skipped).
    pub async fn replay(&self, events: &[Event], seq: u64) {
        let _one_writer = self.apply_lock.lock().await;
        for event in events {
            self.hosts.apply(event);
        }
        self.applied.send_if_modified(|applied| {
            let newer = seq > *applied;
            *applied = (*applied).max(seq);
            newer
        });
    }

    /// Applies events newer than the last one applied, in order, and
    /// reports the last applied. A production or preview hostname's new
    /// deployment starts loading at once, off the request path.
    pub async fn apply(self: &Arc<Self>, events: &[Envelope]) {
        let _one_writer = self.apply_lock.lock().await;
        for env in events {
            if env.seq <= *self.applied.borrow() {
                continue;
            }
            if let Some(site) = self.hosts.apply(&env.event)
                && !self.sites.is_loaded(&site)
            {
                let edge = self.clone();
                tokio::spawn(async move {
                    let _ = edge.sites.get(&site).await;
                });
            }
            self.applied.send_replace(env.seq);
        }
    }

    /// Applies every event of `sub` until the bus closes.
    pub async fn follow(self: Arc<Self>, mut sub: Subscription) {
        while let Some(env) = sub.next().await {
            self.apply(std::slice::from_ref(&env)).await;
        }
    }

    /// The last event sequence number applied, as it changes.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// The hostnames served now (for tests and diagnostics).
    pub fn hosts(&self) -> Vec<String> {
        self.hosts.names()
    }

    /// Sites in memory and the bytes they take, and the budget.
    pub fn site_cache_usage(&self) -> (usize, u64, u64) {
        let (count, bytes) = self.sites.usage();
        (count, bytes, self.sites.budget())
    }

    async fn blob(&self, digest: Digest) -> Result<Bytes, helix_artifacts::BlobError> {
        if let Some(bytes) = self.cache.get(&digest) {
            return Ok(bytes);
        }
        let bytes = self.blobs.get(digest).await?;
        self.cache.insert(digest, bytes.clone());
        Ok(bytes)
    }
}

/// Request ids: a per-process random prefix and a counter, in hex.
struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        RequestIds { prefix: u64::from_le_bytes(seed), next: AtomicU64::new(0) }
    }

    fn next(&self) -> http::HeaderValue {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut out = [0u8; 24];
        for (i, shift) in (0..16).rev().enumerate() {
            out[i] = HEX[((self.prefix >> (shift * 4)) & 0xf) as usize];
        }
        for (i, shift) in (0..8).rev().enumerate() {
            out[16 + i] = HEX[((n >> (shift * 4)) & 0xf) as usize];
        }
        http::HeaderValue::from_bytes(&out).expect("hex digits are valid header bytes")
    }
}

/// Cheap, well-spread draws for split tests: SplitMix64 over a counter
/// seeded at random (no syscall, no lock on the request path).
struct Draws(AtomicU64);

impl Draws {
    fn new() -> Self {
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        Draws(AtomicU64::new(u64::from_le_bytes(seed)))
    }

    fn next_percent(&self) -> u32 {
        let mut z = self.0.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % 100) as u32
    }
}
