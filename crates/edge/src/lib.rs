//! The edge: the HTTP front that serves deployments.
//!
//! A request goes through named phases (see `docs/edge-phases.md`):
//! `accept` → `resolve_host` → `route` → `respond_static` →
//! `finish` (request id, metrics). What to serve comes from one immutable
//! [`snapshot::Snapshot`], swapped atomically when a `deploy.*` event
//! arrives; bytes come from the blob store through an in-memory cache of hot
//! blobs. The edge never reads the state store and never blocks a request on
//! a lock held across I/O.

pub mod geoip;
mod proxy;
mod respond;
mod roles;
pub mod routing;
mod server;
pub mod snapshot;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use bytes::Bytes;
use helix_artifacts::BlobStore;
use helix_bus::Subscription;
use helix_core::Digest;
use helix_core::events::Event;

pub use proxy::{ClientAddr, ProxyConfig};
pub use server::serve;
use snapshot::{Snapshot, SnapshotBuilder};

/// Settings of one edge.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    pub base_domain: String,
    /// Bytes of hot blobs kept in memory.
    pub cache_bytes: u64,
    /// Blobs up to this size are cached whole; larger ones are streamed.
    pub cache_max_blob_bytes: u64,
    /// The request header a trusted front (CDN, load balancer) sets to the
    /// visitor's ISO country code, for Netlify `Country=` rules.
    pub country_header: Option<http::HeaderName>,
    pub proxy: ProxyConfig,
    /// The HS256 secret that signs visitors' `nf_jwt` tokens, for Netlify
    /// `Role=` conditions; without it those rules never apply.
    pub role_jwt_secret: Option<Vec<u8>>,
    /// A MaxMind database for the visitor's country when no trusted header
    /// or `nf_country` cookie says it.
    pub geoip: Option<Arc<geoip::GeoIp>>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            base_domain: "localhost".into(),
            cache_bytes: 256 * 1024 * 1024,
            cache_max_blob_bytes: 4 * 1024 * 1024,
            country_header: None,
            proxy: ProxyConfig::default(),
            role_jwt_secret: None,
            geoip: None,
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
    config: EdgeConfig,
    snapshot: ArcSwap<Snapshot>,
    /// Writer side: only event application takes it, never a request.
    builder: tokio::sync::Mutex<SnapshotBuilder>,
    blobs: Arc<dyn BlobStore>,
    cache: quick_cache::sync::Cache<Digest, Bytes, BlobWeight>,
    request_ids: RequestIds,
    proxy: proxy::Proxy,
    draws: Draws,
}

impl Edge {
    pub fn new(config: EdgeConfig, blobs: Arc<dyn BlobStore>) -> Arc<Edge> {
        let items = (config.cache_bytes / 8192).max(16) as usize;
        let proxy = proxy::Proxy::new(config.proxy.clone());
        Arc::new(Edge {
            proxy,
            cache: quick_cache::sync::Cache::with_weighter(items, config.cache_bytes, BlobWeight),
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            builder: tokio::sync::Mutex::new(SnapshotBuilder::new(config.base_domain.clone())),
            config,
            blobs,
            request_ids: RequestIds::new(),
            draws: Draws::new(),
        })
    }

    /// Applies events (idempotently) and publishes one new snapshot.
    pub async fn apply(&self, events: &[Event]) {
        let mut builder = self.builder.lock().await;
        for event in events {
            if let Err(e) = builder.apply(event, self.blobs.as_ref()).await {
                tracing::error!(error = %e, event = event.topic(), "edge cannot apply event; keeps serving what it had");
            }
        }
        self.snapshot.store(Arc::new(builder.build()));
    }

    /// Applies every event of `sub` until the bus closes.
    pub async fn follow(self: Arc<Self>, mut sub: Subscription) {
        while let Some(event) = sub.next().await {
            self.apply(std::slice::from_ref(&event)).await;
        }
    }

    /// The hostnames served now (for tests and diagnostics).
    pub fn hosts(&self) -> Vec<String> {
        self.snapshot.load().hosts().map(str::to_owned).collect()
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
