//! Bodies of the REST API under `/api/v1`, shared by the server and the CLI.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /api/v1/projects/{project}/deployments`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    /// Site path → SHA-256 hex of the file's bytes.
    pub files: BTreeMap<String, String>,
    #[serde(default)]
    pub production: bool,
    /// Config files from the project root (`netlify.toml`, …), not
    /// served: name → SHA-256 hex. Uploaded like files.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Whose routing semantics apply (`netlify`, `cloudflare-pages`);
    /// default: detected from the files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compat: Option<String>,
    /// Fail the deploy when any routing rule cannot be honored exactly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict: bool,
}

/// What a deployment asked for besides its files, kept while it uploads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployOptions {
    #[serde(default)]
    pub config: BTreeMap<String, crate::Digest>,
    #[serde(default)]
    pub compat: Option<crate::routes::Platform>,
    #[serde(default)]
    pub strict: bool,
}

/// How a deployment's routing files were read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutesReport {
    pub platform: crate::routes::Platform,
    /// Why that platform's semantics were chosen.
    pub reason: String,
    pub redirects: usize,
    pub headers: usize,
    /// Rules that could not be honored exactly, with file and line.
    pub diagnostics: Vec<crate::routes::Diagnostic>,
}

/// Answer to [`CreateDeployment`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreatedDeployment {
    pub id: String,
    pub url: String,
    /// Digests the server does not have yet; upload each with
    /// `PUT /api/v1/deployments/{id}/blobs/{digest}`.
    pub required: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentState {
    /// Created, waiting for blobs and finalize. Never served or listed.
    Uploading,
    /// Complete and immutable.
    Ready,
    /// Finalize refused it (over a limit); never served.
    Error,
}

impl DeploymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::Uploading => "uploading",
            DeploymentState::Ready => "ready",
            DeploymentState::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "uploading" => Some(DeploymentState::Uploading),
            "ready" => Some(DeploymentState::Ready),
            "error" => Some(DeploymentState::Error),
            _ => None,
        }
    }
}

/// A deployment as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: String,
    pub project: String,
    pub state: DeploymentState,
    pub url: String,
    /// Whether the project's production hostname serves this deployment now.
    pub production: bool,
    pub production_url: Option<String>,
    pub file_count: u64,
    pub total_bytes: u64,
    pub created_at_ms: i64,
    pub ready_at_ms: Option<i64>,
    /// How the routing files were compiled (ready deployments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<RoutesReport>,
}

/// `POST /api/v1/projects/{project}/rollback`
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    #[serde(default)]
    pub to: Option<String>,
}

/// `POST /api/v1/gc`
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GcReport {
    pub blobs_deleted: u64,
    pub bytes_freed: u64,
    pub abandoned_deployments: u64,
}

/// An RFC 9457 problem details body, sent with `application/problem+json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Digests still missing, on a 409 from finalize.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<String>>,
}

/// `PUT /api/v1/projects/{project}/split`: deployment id (or
/// `production`) → percent; the weights add up to 100.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetSplit {
    pub weights: BTreeMap<String, u32>,
}

/// A project's split as the API shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub project: String,
    /// Deployment id → percent; empty when traffic is not split.
    pub weights: BTreeMap<String, u32>,
}
