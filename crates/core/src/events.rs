//! Events published on the bus. The control plane writes them to its outbox
//! in the transaction that makes them true, each with the next number of
//! one sequence; the edge applies them in that order and reports the last
//! number it applied, which is how a write knows it is being served.

use serde::{Deserialize, Serialize};

use crate::{DeploymentId, Digest, ProjectName};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// A deployment is complete and may be served at its own hostname.
    #[serde(rename = "deploy.ready")]
    DeployReady { project: ProjectName, deployment: DeploymentId, manifest: Digest },
    /// The project's production pointer moved forward to `deployment`.
    #[serde(rename = "deploy.promoted")]
    DeployPromoted { project: ProjectName, deployment: DeploymentId, manifest: Digest },
    /// The project's production pointer moved back to `deployment`.
    #[serde(rename = "deploy.rolled_back")]
    DeployRolledBack { project: ProjectName, deployment: DeploymentId, manifest: Digest },
    /// The project's production hostname now splits traffic between these
    /// deployments (weights in percent); empty: no split.
    #[serde(rename = "split.changed")]
    SplitChanged { project: ProjectName, variants: Vec<SplitVariant> },
    /// `<alias>--<project>.<base>` (a branch or pull request preview) now
    /// serves `deployment`.
    #[serde(rename = "alias.set")]
    AliasSet { project: ProjectName, alias: String, deployment: DeploymentId, manifest: Digest },
    /// `<alias>--<project>.<base>` serves nothing any more (its branch was
    /// deleted, its pull request closed). The deployments keep their own
    /// hostnames.
    #[serde(rename = "alias.removed")]
    AliasRemoved { project: ProjectName, alias: String },
}

/// An event with its place in the sequence of all committed events (1, 2,
/// …; the order they were committed in).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub seq: u64,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitVariant {
    pub deployment: DeploymentId,
    pub manifest: Digest,
    pub weight: u32,
}

impl Event {
    /// The subject this event is published under.
    pub fn topic(&self) -> &'static str {
        match self {
            Event::DeployReady { .. } => "deploy.ready",
            Event::DeployPromoted { .. } => "deploy.promoted",
            Event::DeployRolledBack { .. } => "deploy.rolled_back",
            Event::SplitChanged { .. } => "split.changed",
            Event::AliasSet { .. } => "alias.set",
            Event::AliasRemoved { .. } => "alias.removed",
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events serialize: plain data")
    }

    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_topic_tag() {
        let e = Event::DeployPromoted {
            project: ProjectName::parse("site").unwrap(),
            deployment: DeploymentId::generate(1, 2),
            manifest: Digest::of(b"m"),
        };
        let json = e.to_json();
        assert!(json.contains(r#""type":"deploy.promoted""#), "{json}");
        assert_eq!(Event::from_json(&json).unwrap(), e);
    }
}
