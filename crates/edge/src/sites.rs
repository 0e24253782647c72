//! Deployments as the edge serves them, loaded on first request.
//!
//! A [`Site`] is a manifest made ready to serve: its file table with
//! headers prepared and its route table compiled to matchers. Sites load
//! when a request first needs them (or when a promote points production
//! at one) into a cache with a memory budget; the coldest go first when it
//! is full. Concurrent requests for a site being loaded wait for the one
//! load; compiling a large route table runs on the blocking pool, so it
//! stalls no other request.

use std::sync::Arc;

use helix_artifacts::BlobStore;
use helix_core::manifest::Manifest;
use helix_core::{DeploymentId, Digest};

use crate::files::Files;
use crate::hosts::SiteRef;
use crate::route::{RequestFacts, RouteNotes, Router};

/// One deployment, ready to serve.
pub struct Site {
    pub deployment: DeploymentId,
    /// The digest of the manifest it was loaded from.
    pub manifest: Digest,
    pub(crate) files: Files,
    pub(crate) router: Router,
    /// The function sources (path → blob), for the runtime plane.
    pub(crate) function_sources: Arc<std::collections::BTreeMap<String, Digest>>,
    /// The variables its functions see from the project's config.
    pub(crate) function_env: Arc<Vec<(String, String)>>,
    /// Bytes it takes in memory, roughly.
    weight: u64,
}

impl Site {
    /// A site from its manifest: a version 1 manifest's route table is
    /// lowered to the platform-neutral form first.
    pub fn from_manifest(manifest: Manifest, digest: Digest) -> Site {
        let files = Files::new(&manifest.files);
        let function_sources = Arc::new(manifest.function_sources);
        let function_env = Arc::new(manifest.function_env.into_iter().collect());
        let router = match &manifest.legacy_routes {
            Some(legacy) => Router::new(helix_config::lower_legacy(legacy), Vec::new()),
            None => Router::new(manifest.routes, manifest.functions),
        };
        let weight = (files.memory_estimate() + router.memory_estimate() + 512) as u64;
        Site {
            deployment: manifest.deployment,
            manifest: digest,
            files,
            router,
            function_sources,
            function_env,
            weight,
        }
    }

    /// Bytes the site takes in memory, roughly.
    pub fn weight(&self) -> u64 {
        self.weight
    }

    /// The route phase alone (for benchmarks and diagnostics): the status
    /// a request would get and, for redirects and proxies, where to.
    pub fn evaluate(&self, req: &RequestFacts<'_>) -> (u16, Option<String>) {
        use crate::route::Outcome;
        match self.router.route(&self.files, req, &mut RouteNotes::default()) {
            Outcome::File { status, .. } => (status, None),
            Outcome::Redirect { status, location } => (status, Some(location)),
            Outcome::Proxy { url, .. } => (200, Some(url)),
            Outcome::Function(chosen) => (200, Some(format!("function {}", chosen.function.name))),
            Outcome::NotFound => (404, None),
            Outcome::MethodNotAllowed => (405, None),
        }
    }
}

/// Why a deployment could not be loaded (its manifest is unreadable).
#[derive(Debug, thiserror::Error)]
#[error("manifest {digest} of deployment {deployment}: {error}")]
pub struct SiteError {
    deployment: DeploymentId,
    digest: Digest,
    error: String,
}

#[derive(Clone)]
struct SiteWeight;

impl quick_cache::Weighter<Digest, Arc<Site>> for SiteWeight {
    fn weight(&self, _key: &Digest, site: &Arc<Site>) -> u64 {
        site.weight
    }
}

/// Sites in memory, within a budget.
pub(crate) struct Sites {
    cache: quick_cache::sync::Cache<Digest, Arc<Site>, SiteWeight>,
    /// The last few sites too heavy for the cache: kept apart so such a
    /// site is not loaded again on every request.
    oversized: std::sync::Mutex<std::collections::VecDeque<Arc<Site>>>,
    budget: u64,
    blobs: Arc<dyn BlobStore>,
}

/// Sites kept apart for being heavier than the whole cache.
const OVERSIZED_KEPT: usize = 2;

impl Sites {
    pub fn new(budget_bytes: u64, blobs: Arc<dyn BlobStore>) -> Sites {
        let budget = budget_bytes.max(1 << 20);
        // One shard: a shard's share of the budget caps the largest site it
        // keeps, and the largest site must fit.
        let options = quick_cache::OptionsBuilder::new()
            .weight_capacity(budget)
            .estimated_items_capacity((budget / (64 * 1024)).max(16) as usize)
            .shards(1)
            .build()
            .expect("weight and item capacities are set");
        let cache = quick_cache::sync::Cache::with_options(
            options,
            SiteWeight,
            quick_cache::DefaultHashBuilder::default(),
            quick_cache::sync::DefaultLifecycle::default(),
        );
        Sites { cache, oversized: Default::default(), budget, blobs }
    }

    /// The site for `site`, loading it if it is not in memory.
    pub async fn get(&self, site: &SiteRef) -> Result<Arc<Site>, SiteError> {
        if let Some(loaded) = self.cache.get(&site.manifest) {
            return Ok(loaded);
        }
        if let Some(loaded) = self.oversized(site) {
            return Ok(loaded);
        }
        let loaded = self.cache.get_or_insert_async(&site.manifest, self.load(site)).await?;
        if !self.cache.contains_key(&site.manifest) {
            let mut kept = self.oversized.lock().unwrap_or_else(|p| p.into_inner());
            if !kept.iter().any(|s| s.manifest == site.manifest) {
                kept.push_back(loaded.clone());
                if kept.len() > OVERSIZED_KEPT {
                    kept.pop_front();
                }
            }
        }
        Ok(loaded)
    }

    fn oversized(&self, site: &SiteRef) -> Option<Arc<Site>> {
        let kept = self.oversized.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter().find(|s| s.manifest == site.manifest).cloned()
    }

    /// Whether `site` is in memory now.
    pub fn is_loaded(&self, site: &SiteRef) -> bool {
        self.cache.contains_key(&site.manifest) || self.oversized(site).is_some()
    }

    /// Sites in memory and the bytes they take.
    pub fn usage(&self) -> (usize, u64) {
        (self.cache.len(), self.cache.weight())
    }

    pub fn budget(&self) -> u64 {
        self.budget
    }

    async fn load(&self, site: &SiteRef) -> Result<Arc<Site>, SiteError> {
        let digest = site.manifest;
        let failed = |error: String| SiteError { deployment: site.deployment.clone(), digest, error };
        let bytes = self.blobs.get(digest).await.map_err(|e| failed(e.to_string()))?;
        let loaded = tokio::task::spawn_blocking(move || {
            Manifest::from_json(&bytes).map(|manifest| Arc::new(Site::from_manifest(manifest, digest)))
        })
        .await
        .map_err(|_| failed("loading was interrupted".into()))?;
        loaded.map_err(|e| failed(e.to_string()))
    }
}
