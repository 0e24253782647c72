//! The deployment manifest (DESIGN.md §4), format version 2.
//!
//! A manifest is stored as a blob like any file and is addressed by its own
//! digest; the edge reads it from the blob store and never from the state
//! store. Once written it never changes. Version 2 holds the
//! platform-neutral route table; version 1 manifests (routes in the
//! platforms' own syntax) stay readable: their table comes back in
//! [`Manifest::legacy_routes`] for `helix-config` to lower.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::routes::{RouteTable, v1};
use crate::{DeploymentId, Digest, ProjectName};

pub const MANIFEST_VERSION: u32 = 2;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub deployment: DeploymentId,
    pub project: ProjectName,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Site path (`/a/b.html`) → file.
    pub files: BTreeMap<String, FileEntry>,
    /// Routing rules compiled at deploy time; absent means plain static
    /// serving.
    #[serde(default, skip_serializing_if = "RouteTable::is_empty")]
    pub routes: RouteTable,
    /// Function sources collected by the build (path relative to the
    /// project root → blob), never served; the function runtimes read them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub function_sources: BTreeMap<String, Digest>,
    /// The functions compiled from those sources, in routing order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<crate::functions::Function>,
    /// Variables its functions see (from the project's config files; no
    /// secrets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub function_env: BTreeMap<String, String>,
    /// The schedules that run against it when it is production.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crons: Vec<crate::functions::Cron>,
    /// A version 1 manifest's route table, as the platforms wrote it
    /// (`routes` is then empty); never written.
    #[serde(skip)]
    pub legacy_routes: Option<v1::RouteTable>,
}

/// The first format: the same but for the route table's form.
#[derive(Deserialize)]
struct ManifestV1 {
    deployment: DeploymentId,
    project: ProjectName,
    created_at_ms: i64,
    files: BTreeMap<String, FileEntry>,
    #[serde(default)]
    routes: v1::RouteTable,
    #[serde(default)]
    function_sources: BTreeMap<String, Digest>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub digest: Digest,
    pub size: u64,
    pub content_type: String,
    /// Precompressed variants made at deploy time, when they are smaller.
    #[serde(default, skip_serializing_if = "Encodings::is_empty")]
    pub encodings: Encodings,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encodings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub br: Option<Variant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gzip: Option<Variant>,
}

impl Encodings {
    pub fn is_empty(&self) -> bool {
        self.br.is_none() && self.gzip.is_none()
    }

    pub fn digests(&self) -> impl Iterator<Item = Digest> + '_ {
        self.br.iter().chain(self.gzip.iter()).map(|v| v.digest)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    pub digest: Digest,
    pub size: u64,
}

impl Manifest {
    /// Every blob this manifest needs: files, their variants, function
    /// sources.
    pub fn blob_digests(&self) -> impl Iterator<Item = Digest> + '_ {
        self.files
            .values()
            .flat_map(|f| std::iter::once(f.digest).chain(f.encodings.digests()))
            .chain(self.function_sources.values().copied())
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("manifest serializes: plain data, string keys")
    }

    /// Reads a manifest of any supported version.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let Version { version } = serde_json::from_slice(bytes).map_err(ManifestError::Json)?;
        match version {
            MANIFEST_VERSION => serde_json::from_slice(bytes).map_err(ManifestError::Json),
            1 => {
                let v1: ManifestV1 = serde_json::from_slice(bytes).map_err(ManifestError::Json)?;
                Ok(Manifest {
                    version: 1,
                    deployment: v1.deployment,
                    project: v1.project,
                    created_at_ms: v1.created_at_ms,
                    files: v1.files,
                    routes: RouteTable::default(),
                    function_sources: v1.function_sources,
                    functions: Vec::new(),
                    crons: Vec::new(),
                    function_env: BTreeMap::new(),
                    legacy_routes: Some(v1.routes),
                })
            }
            other => Err(ManifestError::Version(other)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(serde_json::Error),
    #[error("manifest version {0} is not supported (this build reads 1 and {MANIFEST_VERSION})")]
    Version(u32),
}
