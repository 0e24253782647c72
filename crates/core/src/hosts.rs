//! Hostnames (DESIGN.md §3): `<project>.<base>` serves production,
//! `<deployment-id>--<project>.<base>` serves one deployment forever and
//! `<alias>--<project>.<base>` serves a branch's or pull request's newest
//! deployment.

use crate::{DeploymentId, ProjectName};

pub fn production_host(project: &ProjectName, base: &str) -> String {
    format!("{project}.{base}")
}

pub fn deployment_host(id: &DeploymentId, project: &ProjectName, base: &str) -> String {
    format!("{id}--{project}.{base}")
}

pub fn alias_host(alias: &str, project: &ProjectName, base: &str) -> String {
    format!("{alias}--{project}.{base}")
}

/// Longest alias: a DNS label's 63 characters leave room for `--` and a
/// short project name.
pub const MAX_ALIAS_LEN: usize = 50;

/// The alias of a branch: its name slugified so that `<alias>--<project>`
/// stays one DNS label (at most 63 characters, no `--` inside the alias).
pub fn branch_alias(branch: &str, project: &ProjectName) -> String {
    let room = 63usize.saturating_sub(project.as_str().len() + 2).clamp(1, MAX_ALIAS_LEN);
    let mut out = String::new();
    for c in branch.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(room);
    let slug = out.trim_matches('-');
    if slug.is_empty() { "branch".to_owned() } else { slug.to_owned() }
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

    pub fn alias_url(&self, alias: &str, project: &ProjectName) -> String {
        self.url_for_host(&alias_host(alias, project, &self.base_domain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_aliases_fit_one_dns_label() {
        let p = ProjectName::parse("my-app").unwrap();
        assert_eq!(branch_alias("feature/x--y", &p), "feature-x-y");
        let long = "b".repeat(100);
        assert_eq!(branch_alias(&long, &p).len(), MAX_ALIAS_LEN);
        let long_project = ProjectName::parse(&"p".repeat(40)).unwrap();
        assert_eq!(format!("{}--{long_project}", branch_alias(&long, &long_project)).len(), 63);
        assert_eq!(branch_alias("///", &p), "branch");
    }
}
