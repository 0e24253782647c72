//! Identifiers: deployment ids (lowercase ULIDs, so they fit in a hostname
//! label and sort by creation time) and project names (DNS-label slugs).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A deployment's id: a ULID in lowercase Crockford base32, 26 characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeploymentId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("invalid deployment id {0:?}: expected a 26-character ULID")]
    Deployment(String),
    #[error(
        "invalid project name {0:?}: use 1-63 lowercase letters, digits and single hyphens, starting with a letter or digit"
    )]
    Project(String),
}

impl DeploymentId {
    /// A fresh id for a deployment created at `unix_ms`, with `random` bits.
    pub fn generate(unix_ms: u64, random: u128) -> Self {
        let id = ulid::Ulid::from_parts(unix_ms, random);
        DeploymentId(id.to_string().to_ascii_lowercase())
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        lowercase_ulid(s).map(DeploymentId).ok_or_else(|| IdError::Deployment(s.chars().take(80).collect()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `s` as a lowercase ULID, if it is one.
pub(crate) fn lowercase_ulid(s: &str) -> Option<String> {
    (s.len() == 26 && ulid::Ulid::from_string(s).is_ok()).then(|| s.to_ascii_lowercase())
}

impl TryFrom<String> for DeploymentId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<DeploymentId> for String {
    fn from(id: DeploymentId) -> String {
        id.0
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeploymentId({})", self.0)
    }
}

/// A project's name, also the first label of its production hostname.
///
/// A DNS label (1–63 of `[a-z0-9-]`, no leading or trailing hyphen) that
/// never contains `--`, because `--` separates a deployment id or branch from
/// the project in preview hostnames.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProjectName(String);

impl ProjectName {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
            && !s.contains("--");
        if ok { Ok(ProjectName(s.to_owned())) } else { Err(IdError::Project(s.chars().take(80).collect())) }
    }

    /// Turns a free-form name (a directory name, say) into a valid project
    /// name, or `None` when nothing usable is left.
    pub fn slugify(s: &str) -> Option<Self> {
        let mut out = String::new();
        for c in s.chars().flat_map(char::to_lowercase) {
            if c.is_ascii_alphanumeric() {
                out.push(c);
            } else if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
        }
        out.truncate(63);
        let trimmed = out.trim_matches('-');
        Self::parse(trimmed).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProjectName {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<ProjectName> for String {
    fn from(p: ProjectName) -> String {
        p.0
    }
}

impl fmt::Display for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names() {
        for good in ["a", "my-site", "site2", &"a".repeat(63)] {
            assert!(ProjectName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "a--b", "A", "a_b", "a.b", &"a".repeat(64), "é"] {
            assert!(ProjectName::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(ProjectName::slugify("My Site!").map(String::from).as_deref(), Some("my-site"));
        assert_eq!(ProjectName::slugify("__"), None);
    }

    #[test]
    fn deployment_ids_are_lowercase_ulids() {
        let id = DeploymentId::generate(1_700_000_000_000, 42);
        assert_eq!(id.as_str().len(), 26);
        assert_eq!(id.as_str(), id.as_str().to_ascii_lowercase());
        assert_eq!(DeploymentId::parse(&id.as_str().to_uppercase()), Ok(id));
        assert!(DeploymentId::parse("nope").is_err());
    }
}
