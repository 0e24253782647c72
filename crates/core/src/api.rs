//! Bodies of the REST API under `/api/v1`, shared by the server and the CLI.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /api/v1/projects/{project}/deployments`
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// Once ready, also serve it at `<alias>--<project>.<base>` (branch
    /// and pull request previews).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Function sources (not served; kept for the function runtimes):
    /// path relative to the project root → SHA-256 hex. Uploaded like files.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub functions: BTreeMap<String, String>,
    /// Netlify's deploy context it is built in (`production`,
    /// `deploy-preview`, `branch-deploy`, `dev`), for the config's
    /// `[context.*]` settings; default: `production` for a production
    /// deployment, else `deploy-preview`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The branch it was built from, for `[context.<branch>]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub functions: BTreeMap<String, crate::Digest>,
    /// The deploy context (always set on new deployments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

impl DeployOptions {
    /// Blobs the deployment carries besides its served files: config files
    /// and function sources.
    pub fn unserved_blobs(&self) -> impl Iterator<Item = crate::Digest> + '_ {
        self.config.values().chain(self.functions.values()).copied()
    }
}

/// How a deployment's routing files were read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedDeployment {
    pub id: String,
    pub url: String,
    /// Digests the server does not have yet; upload each with
    /// `PUT /api/v1/deployments/{id}/blobs/{digest}`.
    pub required: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// On the answer to a change (finalize, promote, rollback): whether the
    /// edges serve it yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<Propagation>,
}

/// Whether the edges serve a change yet. Writes that change what is
/// served (finalize, promote, rollback, split) answer once they do — `200`
/// with `served: true` — or, when the edges have not confirmed it in time,
/// `202` with `served: false`: the change is committed and will be served
/// when they catch up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Propagation {
    pub served: bool,
    /// The change's event sequence number.
    pub seq: u64,
    /// How long the answer waited for the edges, in milliseconds.
    pub waited_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `POST /api/v1/projects/{project}/rollback`
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    #[serde(default)]
    pub to: Option<String>,
}

/// `POST /api/v1/gc`
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GcReport {
    pub blobs_deleted: u64,
    pub bytes_freed: u64,
    pub abandoned_deployments: u64,
}

/// An RFC 9457 problem details body, sent with `application/problem+json`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSplit {
    pub weights: BTreeMap<String, u32>,
}

/// `GET /api/v1/projects`: a project the caller can see.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProjectSummary {
    pub name: String,
    pub org: String,
    /// The production deployment's id, if one is live.
    pub production: Option<String>,
    /// Where production is served.
    pub url: String,
}

/// A project's split as the API shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Split {
    pub project: String,
    /// Deployment id → percent; empty when traffic is not split.
    pub weights: BTreeMap<String, u32>,
    /// On the answer to a change: whether the edges serve it yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<Propagation>,
}

/// `PUT /api/v1/projects/{project}/link`: connect a project to a git
/// repository so pushes build it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkProject {
    /// Clone URL (https, ssh, git or file).
    pub repo: String,
    /// Default `main`.
    #[serde(default)]
    pub production_branch: Option<String>,
    /// A token (https) or a deploy key (an SSH private key) for private
    /// repositories. Write-only: stored encrypted, never shown again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_credential: Option<String>,
    /// The git host's API base for commit statuses, for a self-hosted
    /// host (`https://git.example.com/api/v4`); default: the provider's
    /// public API (api.github.com, gitlab.com, api.bitbucket.org).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_api: Option<String>,
}

/// A project's git link as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProjectLink {
    pub project: String,
    pub repo: String,
    pub production_branch: String,
    pub has_git_credential: bool,
    /// The secret to configure at the git host; shown only when linking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// Provider → webhook URL to configure.
    pub hooks: BTreeMap<String, String>,
    /// Where commit statuses go, when not the provider's public API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_api: Option<String>,
}

/// `POST /api/v1/projects/{project}/builds`
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestBuild {
    /// Branch to build; default: the production branch.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
}

/// A build as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Build {
    pub id: String,
    pub project: String,
    pub state: crate::build::BuildState,
    /// `github`, `gitlab`, `bitbucket`, `git` (generic hook) or `api`.
    pub trigger: String,
    pub branch: String,
    pub commit: Option<String>,
    pub context: crate::build::BuildContext,
    /// Where the result is served once ready: production or the preview.
    pub url: String,
    pub deployment: Option<String>,
    pub deployment_url: Option<String>,
    /// What the buildpacks detected, and why.
    pub detected: Option<String>,
    pub error: Option<String>,
    /// The step that failed (`fetch`, `install`, `build`, `publish`).
    pub failed_step: Option<String>,
    pub exit_status: Option<i64>,
    pub attempts: i64,
    pub log_truncated: bool,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// What the git host answered the last commit status posted for this
    /// build (`github success: posted (201)`), or why none was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_status: Option<String>,
}

/// One line of a build's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    pub seq: i64,
    pub at_ms: i64,
    pub line: String,
}

/// The answer to a webhook delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HookResponse {
    /// Builds this delivery queued (empty for events that build nothing).
    pub builds: Vec<Build>,
    /// True when this delivery id was seen before: nothing new was queued.
    #[serde(default)]
    pub duplicate: bool,
    pub message: String,
}

/// `GET /api/v1/policy`: the organisation's Rego module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Policy {
    pub source: String,
    pub version: i64,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

/// `PUT /api/v1/policy`
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPolicy {
    pub source: String,
}

/// `POST /api/v1/policy/test`: an input document, and a module to test
/// instead of the organisation's.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestPolicy {
    pub input: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// What a policy decided, and how long evaluating it took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyVerdict {
    pub allowed: bool,
    pub messages: Vec<String>,
    pub eval_us: u64,
}

/// `POST /api/v1/projects/{project}/webhooks`
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    pub url: String,
    /// Event types (`deploy.ready`, `build.finished`, …); default: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// The HMAC secret; default: a new random one, shown once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A project's outgoing webhook (never its secret, but when made).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Webhook {
    pub id: String,
    pub project: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `POST /projects/{p}/domains`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddDomain {
    /// `shop.example.com`, or `*.preview.example.com` (an IDN is taken as
    /// punycode).
    pub name: String,
    /// A wildcard only: serve `<branch>.<rest>` as the branch's (or pull
    /// request's) preview and `<deployment-id>.<rest>` as that deployment,
    /// instead of production.
    #[serde(default)]
    pub previews: bool,
    /// Answer every request with a permanent redirect to this other
    /// domain of the project (the apex ↔ `www` pair).
    #[serde(default)]
    pub redirect_to: Option<String>,
}

/// A custom domain of a project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Domain {
    pub name: String,
    pub project: String,
    pub previews: bool,
    pub redirect_to: Option<String>,
    /// Once verified the edge serves it, and no other project may claim it.
    pub verified: bool,
    pub verified_at_ms: Option<i64>,
    /// The TXT record that proves control: its name and value.
    pub txt_name: String,
    pub txt_value: String,
    /// Where the edge answers the HTTP proof (exact names only), once the
    /// name's DNS points at it.
    pub http_path: Option<String>,
    /// Why the last verification failed.
    pub last_error: Option<String>,
    pub last_checked_ms: Option<i64>,
    pub created_at_ms: i64,
    /// What a user does next.
    pub hint: Option<String>,
    /// A change's way to the edges (when this answer made one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<Propagation>,
}
