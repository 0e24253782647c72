//! Hostnames (DESIGN.md §3): `<project>.<base>` serves production and
//! `<deployment-id>--<project>.<base>` serves one deployment forever.

use crate::{DeploymentId, ProjectName};

pub fn production_host(project: &ProjectName, base: &str) -> String {
    format!("{project}.{base}")
}

pub fn deployment_host(id: &DeploymentId, project: &ProjectName, base: &str) -> String {
    format!("{id}--{project}.{base}")
}

/// Where an edge is reached from outside: the scheme and the port suffix
/// (empty for the scheme's default port) that URLs handed to users carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicEdge {
    pub scheme: &'static str,
    pub base_domain: String,
    pub port: u16,
}

impl PublicEdge {
    pub fn url_for_host(&self, host: &str) -> String {
        let default_port = matches!((self.scheme, self.port), ("http", 80) | ("https", 443));
        if default_port {
            format!("{}://{host}", self.scheme)
        } else {
            format!("{}://{host}:{}", self.scheme, self.port)
        }
    }

    pub fn production_url(&self, project: &ProjectName) -> String {
        self.url_for_host(&production_host(project, &self.base_domain))
    }

    pub fn deployment_url(&self, id: &DeploymentId, project: &ProjectName) -> String {
        self.url_for_host(&deployment_host(id, project, &self.base_domain))
    }
}
