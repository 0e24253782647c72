//! The deployment manifest (DESIGN.md §4), format version 1.
//!
//! A manifest is stored as a blob like any file and is addressed by its own
//! digest; the edge reads it from the blob store and never from the state
//! store. Once written it never changes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::routes::RouteTable;
use crate::{DeploymentId, Digest, ProjectName};

pub const MANIFEST_VERSION: u32 = 1;

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

    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(ManifestError::Json)?;
        if m.version != MANIFEST_VERSION {
            return Err(ManifestError::Version(m.version));
        }
        Ok(m)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(serde_json::Error),
    #[error("manifest version {0} is not supported (this build reads {MANIFEST_VERSION})")]
    Version(u32),
}
