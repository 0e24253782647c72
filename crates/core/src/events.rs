//! Events published on the bus. The control plane writes them to its outbox
//! in the transaction that makes them true, each with the next number of
//! one sequence; the edge applies them in that order and reports the last
//! number it applied, which is how a write knows it is being served.
//!
//! Every event travels in a versioned [`Envelope`] (type, version,
//! sequence number, time, actor, project), on the bus and in outgoing
//! webhooks alike. A consumer that meets a type it does not know reads it
//! as [`Event::Unknown`], skips it and moves on past its number: types are
//! added without breaking older consumers.

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
    /// A project claimed `domain` and has yet to prove it: the edge
    /// answers `/.well-known/helix-challenge/<token>` on it.
    #[serde(rename = "domain.pending")]
    DomainPending { project: ProjectName, domain: String, token: String },
    /// `domain` (verified) serves the project: its production, its
    /// previews (a wildcard with `previews`), or a redirect to another
    /// of its domains.
    #[serde(rename = "domain.set")]
    DomainSet {
        project: ProjectName,
        domain: String,
        previews: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        redirect_to: Option<String>,
    },
    /// The project no longer claims `domain`.
    #[serde(rename = "domain.removed")]
    DomainRemoved { project: ProjectName, domain: String, token: String },
    /// A build was queued (`trigger`: `api`, `github`, …).
    #[serde(rename = "build.requested")]
    BuildRequested { project: ProjectName, build: String, branch: String, trigger: String },
    /// A build ended: `ready` (with its deployment), `error` or `canceled`.
    #[serde(rename = "build.finished")]
    BuildFinished { project: ProjectName, build: String, state: String, deployment: Option<String> },
    /// A variable was set or removed (never its value).
    #[serde(rename = "env.changed")]
    EnvChanged { project: ProjectName, name: String, environments: Vec<String>, removed: bool },
    /// A member's role changed (`role: None`: the membership ended).
    #[serde(rename = "member.changed")]
    MemberChanged { org: String, user: String, role: Option<String>, project: Option<String> },
    /// A type this build of HelixStack does not know (written by a newer
    /// one): skipped.
    #[serde(other)]
    Unknown,
}

/// The envelope's format: readers accept older ones (missing fields take
/// their defaults).
pub const ENVELOPE_VERSION: u32 = 1;

fn envelope_version() -> u32 {
    ENVELOPE_VERSION
}

/// An event with its place in the sequence of all committed events (1, 2,
/// …; the order they were committed in), when it was committed and who
/// made it happen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub seq: u64,
    #[serde(default = "envelope_version")]
    pub version: u32,
    #[serde(default)]
    pub at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(flatten)]
    pub event: Event,
}

impl Envelope {
    /// An envelope of the current version.
    pub fn new(seq: u64, event: Event) -> Envelope {
        Envelope { seq, version: ENVELOPE_VERSION, at_ms: 0, actor: None, event }
    }

    /// The webhook body: the envelope with the event's fields under `data`.
    pub fn to_webhook_json(&self) -> serde_json::Value {
        let mut data = serde_json::to_value(&self.event).unwrap_or_default();
        if let Some(fields) = data.as_object_mut() {
            fields.remove("type");
        }
        serde_json::json!({
            "type": self.event.topic(), "version": self.version, "seq": self.seq, "at_ms": self.at_ms,
            "actor": self.actor, "project": self.event.project().map(ProjectName::as_str), "data": data,
        })
    }
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
            Event::DomainPending { .. } => "domain.pending",
            Event::DomainSet { .. } => "domain.set",
            Event::DomainRemoved { .. } => "domain.removed",
            Event::BuildRequested { .. } => "build.requested",
            Event::BuildFinished { .. } => "build.finished",
            Event::EnvChanged { .. } => "env.changed",
            Event::MemberChanged { .. } => "member.changed",
            Event::Unknown => "unknown",
        }
    }

    /// The project it is about, if any.
    pub fn project(&self) -> Option<&ProjectName> {
        match self {
            Event::DeployReady { project, .. }
            | Event::DeployPromoted { project, .. }
            | Event::DeployRolledBack { project, .. }
            | Event::SplitChanged { project, .. }
            | Event::AliasSet { project, .. }
            | Event::AliasRemoved { project, .. }
            | Event::DomainPending { project, .. }
            | Event::DomainSet { project, .. }
            | Event::DomainRemoved { project, .. }
            | Event::BuildRequested { project, .. }
            | Event::BuildFinished { project, .. }
            | Event::EnvChanged { project, .. } => Some(project),
            Event::MemberChanged { .. } | Event::Unknown => None,
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

    #[test]
    fn an_older_reader_skips_a_type_it_does_not_know() {
        // A newer server's event, with fields this build has never heard of.
        let newer =
            r#"{"seq":7,"version":2,"at_ms":5,"type":"domain.verified","project":"site","domain":"x.dev","extra":[1]}"#;
        let env: Envelope = serde_json::from_str(newer).unwrap();
        assert_eq!((env.seq, env.version, &env.event), (7, 2, &Event::Unknown));
        // An envelope from before versions existed reads as version 1.
        let older = r#"{"seq":3,"type":"alias.removed","project":"site","alias":"feat"}"#;
        let env: Envelope = serde_json::from_str(older).unwrap();
        assert_eq!((env.version, env.at_ms, env.event.topic()), (1, 0, "alias.removed"));
        let hook = env.to_webhook_json();
        assert_eq!(hook["data"], serde_json::json!({ "project": "site", "alias": "feat" }));
        assert_eq!((hook["type"].as_str(), hook["project"].as_str()), (Some("alias.removed"), Some("site")));
    }
}
