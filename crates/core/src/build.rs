//! Builds (DESIGN.md §7): the job a git push or `helix build` puts on the
//! queue, what it is for (production, a branch preview, a pull request
//! preview) and the states it passes through.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ProjectName;

/// A build's id: a lowercase ULID, like a deployment's.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BuildId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid build id {0:?}: expected a 26-character ULID")]
pub struct BuildIdError(String);

impl BuildId {
    pub fn generate(unix_ms: u64, random: u128) -> Self {
        BuildId(ulid::Ulid::from_parts(unix_ms, random).to_string().to_ascii_lowercase())
    }

    pub fn parse(s: &str) -> Result<Self, BuildIdError> {
        crate::ids::lowercase_ulid(s).map(BuildId).ok_or_else(|| BuildIdError(s.chars().take(80).collect()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BuildId {
    type Error = BuildIdError;
    fn try_from(s: String) -> Result<Self, BuildIdError> {
        Self::parse(&s)
    }
}

impl From<BuildId> for String {
    fn from(id: BuildId) -> String {
        id.0
    }
}

impl fmt::Display for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BuildId({})", self.0)
    }
}

/// `queued → building → ready | error | canceled` (DESIGN.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BuildState {
    Queued,
    Building,
    Ready,
    Error,
    Canceled,
}

impl BuildState {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildState::Queued => "queued",
            BuildState::Building => "building",
            BuildState::Ready => "ready",
            BuildState::Error => "error",
            BuildState::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => BuildState::Queued,
            "building" => BuildState::Building,
            "ready" => BuildState::Ready,
            "error" => BuildState::Error,
            "canceled" => BuildState::Canceled,
            _ => return None,
        })
    }

    pub fn is_finished(self) -> bool {
        matches!(self, BuildState::Ready | BuildState::Error | BuildState::Canceled)
    }
}

/// What a build's deployment becomes when it is ready.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BuildContext {
    /// A push to the production branch: goes live at `<project>.<base>`.
    Production,
    /// A push to another branch: `<branch-slug>--<project>.<base>`.
    Branch,
    /// A pull or merge request: `deploy-preview-<n>--<project>.<base>`.
    /// From a fork it builds without secrets.
    PullRequest { number: u64, fork: bool },
}

impl BuildContext {
    /// The alias (first half of the preview hostname) the deployment gets.
    pub fn alias(&self, branch: &str, project: &ProjectName) -> Option<String> {
        match self {
            BuildContext::Production => None,
            BuildContext::Branch => Some(crate::hosts::branch_alias(branch, project)),
            BuildContext::PullRequest { number, .. } => Some(format!("deploy-preview-{number}")),
        }
    }

    /// Netlify's name for the context (`CONTEXT`, `[context.<name>]`).
    pub fn netlify_name(&self) -> &'static str {
        match self {
            BuildContext::Production => "production",
            BuildContext::Branch => "branch-deploy",
            BuildContext::PullRequest { .. } => "deploy-preview",
        }
    }

    /// The branch whose `[context.<branch>]` applies: a push's, not a pull
    /// request's (Netlify gives previews their context only).
    pub fn context_branch<'a>(&self, branch: &'a str) -> Option<&'a str> {
        (!matches!(self, BuildContext::PullRequest { .. })).then_some(branch)
    }

    /// Builds that may see the project's secrets: not forks' pull requests.
    pub fn trusted(&self) -> bool {
        !matches!(self, BuildContext::PullRequest { fork: true, .. })
    }
}

/// A `build.requested` job as the queue carries it. No secret travels in
/// it: the worker asks its host for the project's credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildJob {
    pub build: BuildId,
    pub project: ProjectName,
    /// Where to clone from.
    pub repo: String,
    /// The branch (or, for `helix build --ref`, any ref) to build.
    pub git_ref: String,
    /// The exact commit, when the trigger named one (webhooks do). A short
    /// prefix is accepted: Bitbucket sends 12 characters for pull requests.
    pub commit: Option<String>,
    pub context: BuildContext,
}

/// How a build ended, as its worker reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildOutcome {
    /// `Ready` or `Error`.
    pub state: BuildState,
    pub deployment: Option<String>,
    pub error: Option<String>,
    pub failed_step: Option<String>,
    pub exit_status: Option<i64>,
}

/// Whether `s` can be a git commit id (4–40 hex digits).
pub fn is_commit_id(s: &str) -> bool {
    (4..=40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `s` is a branch name git and we accept: no control characters,
/// no `..`, no leading `-` (it would read as an option), bounded length.
pub fn is_branch_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.starts_with(['-', '/'])
        && !s.ends_with(['/', '.'])
        && !s.contains("..")
        && !s.contains("@{")
        && !s.bytes().any(|b| b.is_ascii_control() || b" ~^:?*[\\".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_name_their_aliases() {
        let p = ProjectName::parse("my-app").unwrap();
        assert_eq!(BuildContext::Production.alias("main", &p), None);
        assert_eq!(BuildContext::Branch.alias("Feature/Login_Form", &p).as_deref(), Some("feature-login-form"));
        let pr = BuildContext::PullRequest { number: 42, fork: true };
        assert_eq!(pr.alias("x", &p).as_deref(), Some("deploy-preview-42"));
        assert!(!pr.trusted());
    }

    #[test]
    fn branch_names_that_could_be_options_or_paths_are_refused() {
        assert!(is_branch_name("feature/x-1"));
        for bad in ["", "-rf", "a..b", "a b", "x\n", "/abs", "t@{1}"] {
            assert!(!is_branch_name(bad), "{bad:?}");
        }
        assert!(is_commit_id("0123abcdef01"));
        assert!(!is_commit_id("main"));
    }
}
