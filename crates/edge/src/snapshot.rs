//! The routing snapshot: hostname → site, and each site's file table with
//! its response headers prepared once, so a request only looks things up.

use std::collections::HashMap;
use std::sync::Arc;

use helix_artifacts::BlobStore;
use helix_core::events::Event;
use helix_core::hosts::{alias_host, deployment_host, production_host};
use helix_core::manifest::{FileEntry, Manifest};
use helix_core::{DeploymentId, Digest, ProjectName};
use http::HeaderValue;

/// One deployment as the edge serves it.
pub struct Site {
    pub deployment: DeploymentId,
    pub(crate) files: HashMap<Box<str>, ServedFile>,
    pub(crate) router: crate::routing::Router,
}

impl Site {
    /// A site as the edge serves it: file table with prepared headers, and
    /// the route table compiled to matchers.
    pub fn from_manifest(manifest: &Manifest) -> Site {
        let files =
            manifest.files.iter().map(|(path, entry)| (path.as_str().into(), ServedFile::from_entry(entry))).collect();
        let router = crate::routing::Router::new(&manifest.routes);
        Site { deployment: manifest.deployment.clone(), files, router }
    }

    pub(crate) fn file(&self, path: &str) -> Option<&ServedFile> {
        self.files.get(path)
    }

    /// The route phase alone (for benchmarks and diagnostics): the status
    /// a request would get and, for redirects, its `Location`.
    pub fn evaluate(&self, req: &crate::routing::RequestFacts<'_>) -> (u16, Option<String>) {
        use crate::routing::Outcome;
        match self.router.route(self, req) {
            Outcome::File { status, .. } => (status, None),
            Outcome::Redirect { status, location } => (status, Some(location)),
            Outcome::Proxy { url, .. } => (200, Some(url)),
            Outcome::NotFound => (404, None),
            Outcome::MethodNotAllowed => (405, None),
        }
    }
}

pub(crate) struct ServedFile {
    pub identity: Representation,
    pub content_type: HeaderValue,
    pub br: Option<Representation>,
    pub gzip: Option<Representation>,
}

#[derive(Clone)]
pub(crate) struct Representation {
    pub digest: Digest,
    pub size: u64,
    pub etag: HeaderValue,
}

impl Representation {
    fn new(digest: Digest, size: u64, suffix: &str) -> Self {
        let etag = HeaderValue::from_str(&format!("\"{digest}{suffix}\"")).expect("hex is a valid header value");
        Representation { digest, size, etag }
    }
}

impl ServedFile {
    fn from_entry(entry: &FileEntry) -> Self {
        ServedFile {
            identity: Representation::new(entry.digest, entry.size, ""),
            content_type: HeaderValue::from_str(&entry.content_type)
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
            br: entry.encodings.br.map(|v| Representation::new(v.digest, v.size, ".br")),
            gzip: entry.encodings.gzip.map(|v| Representation::new(v.digest, v.size, ".gz")),
        }
    }
}

/// What requests read: immutable once published.
#[derive(Default)]
pub struct Snapshot {
    hosts: HashMap<Box<str>, Target>,
}

/// What a hostname serves: one site, or a weighted split between sites.
#[derive(Clone)]
pub enum Target {
    Site(Arc<Site>),
    Split(Arc<Split>),
}

/// Sites with cumulative weights: variant `i` takes draws below `upto`.
pub struct Split {
    pub variants: Vec<(Arc<Site>, u32)>,
}

impl Split {
    /// The variant named `id` (a pin from the override header or cookie).
    pub fn pinned(&self, id: &str) -> Option<&Arc<Site>> {
        self.variants.iter().map(|(s, _)| s).find(|s| s.deployment.as_str() == id)
    }

    /// The variant for a draw in `0..100`.
    pub fn draw(&self, percent: u32) -> &Arc<Site> {
        let (site, _) = self
            .variants
            .iter()
            .find(|(_, upto)| percent < *upto)
            .unwrap_or_else(|| self.variants.last().expect("a split has at least one variant"));
        site
    }
}

impl Snapshot {
    pub fn target(&self, host: &str) -> Option<&Target> {
        self.hosts.get(host)
    }

    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts.keys().map(|h| &**h)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("manifest {digest} of deployment {deployment}: {source}")]
    Blob { deployment: DeploymentId, digest: Digest, source: helix_artifacts::BlobError },
    #[error("manifest {digest} of deployment {deployment}: {source}")]
    Manifest { deployment: DeploymentId, digest: Digest, source: helix_core::manifest::ManifestError },
}

/// The writer's side: the sites known and the production pointers, from
/// which each new snapshot is built.
pub(crate) struct SnapshotBuilder {
    base_domain: String,
    sites: HashMap<DeploymentId, (ProjectName, Arc<Site>)>,
    production: HashMap<ProjectName, DeploymentId>,
    /// Projects whose production hostname splits traffic.
    splits: HashMap<ProjectName, Vec<(DeploymentId, u32)>>,
    /// Preview aliases: (project, alias) → deployment.
    aliases: HashMap<(ProjectName, String), DeploymentId>,
}

impl SnapshotBuilder {
    pub fn new(base_domain: String) -> Self {
        SnapshotBuilder {
            base_domain,
            sites: HashMap::new(),
            production: HashMap::new(),
            splits: HashMap::new(),
            aliases: HashMap::new(),
        }
    }

    pub async fn apply(&mut self, event: &Event, blobs: &dyn BlobStore) -> Result<(), ApplyError> {
        match event {
            Event::DeployReady { project, deployment, manifest } => {
                self.load(project, deployment, *manifest, blobs).await?;
            }
            Event::DeployPromoted { project, deployment, manifest }
            | Event::DeployRolledBack { project, deployment, manifest } => {
                self.load(project, deployment, *manifest, blobs).await?;
                self.production.insert(project.clone(), deployment.clone());
            }
            Event::AliasSet { project, alias, deployment, manifest } => {
                self.load(project, deployment, *manifest, blobs).await?;
                self.aliases.insert((project.clone(), alias.clone()), deployment.clone());
            }
            Event::AliasRemoved { project, alias } => {
                self.aliases.remove(&(project.clone(), alias.clone()));
            }
            Event::SplitChanged { project, variants } => {
                for v in variants {
                    self.load(project, &v.deployment, v.manifest, blobs).await?;
                }
                if variants.is_empty() {
                    self.splits.remove(project);
                } else {
                    let weights = variants.iter().map(|v| (v.deployment.clone(), v.weight)).collect();
                    self.splits.insert(project.clone(), weights);
                }
            }
        }
        Ok(())
    }

    async fn load(
        &mut self,
        project: &ProjectName,
        deployment: &DeploymentId,
        digest: Digest,
        blobs: &dyn BlobStore,
    ) -> Result<(), ApplyError> {
        if self.sites.contains_key(deployment) {
            return Ok(());
        }
        let bytes = blobs.get(digest).await.map_err(|source| ApplyError::Blob {
            deployment: deployment.clone(),
            digest,
            source,
        })?;
        let manifest = Manifest::from_json(&bytes).map_err(|source| ApplyError::Manifest {
            deployment: deployment.clone(),
            digest,
            source,
        })?;
        let site = Arc::new(Site::from_manifest(&manifest));
        self.sites.insert(deployment.clone(), (project.clone(), site));
        Ok(())
    }

    pub fn build(&self) -> Snapshot {
        let mut hosts = HashMap::with_capacity(self.sites.len() + self.production.len() + self.aliases.len());
        // Aliases first: a deployment's own hostname wins over a branch
        // that happens to be named like a deployment id.
        for ((project, alias), id) in &self.aliases {
            if let Some((_, site)) = self.sites.get(id) {
                hosts
                    .insert(alias_host(alias, project, &self.base_domain).into_boxed_str(), Target::Site(site.clone()));
            }
        }
        for (id, (project, site)) in &self.sites {
            hosts.insert(deployment_host(id, project, &self.base_domain).into_boxed_str(), Target::Site(site.clone()));
        }
        for (project, id) in &self.production {
            if let Some((_, site)) = self.sites.get(id) {
                hosts.insert(production_host(project, &self.base_domain).into_boxed_str(), Target::Site(site.clone()));
            }
        }
        for (project, weights) in &self.splits {
            let mut upto = 0;
            let variants: Vec<(Arc<Site>, u32)> = weights
                .iter()
                .filter_map(|(id, weight)| {
                    upto += weight;
                    self.sites.get(id).map(|(_, site)| (site.clone(), upto))
                })
                .collect();
            if !variants.is_empty() {
                let split = Target::Split(Arc::new(Split { variants }));
                hosts.insert(production_host(project, &self.base_domain).into_boxed_str(), split);
            }
        }
        Snapshot { hosts }
    }
}
