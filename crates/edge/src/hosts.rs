//! Hostname → what it serves, for every deployment ever made ready.
//!
//! Requests read a concurrent map (papaya: lock-free reads); event
//! application changes only the hostnames an event is about, so applying
//! one project's change is a few map writes, whatever else the edge holds,
//! and never waits for a manifest to load. The map holds references to
//! deployments (id, project, manifest digest), not their manifests: those
//! load on first request (`sites.rs`).
//!
//! Custom domains serve what the project's production hostname serves,
//! or redirect to another of its domains; a wildcard (`*.rest`) serves
//! one label below it — production, or with previews the branch alias or
//! deployment that label names, never another project's. Claimed domains
//! not yet verified only answer their HTTP proof.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use helix_core::events::Event;
use helix_core::hosts::{alias_host, deployment_host, production_host};
use helix_core::{DeploymentId, Digest, ProjectName};

/// A deployment the edge can serve: enough to load its manifest.
#[derive(Debug, PartialEq, Eq)]
pub struct SiteRef {
    pub deployment: DeploymentId,
    pub project: ProjectName,
    pub manifest: Digest,
}

/// What a hostname serves: one deployment, a weighted split, or a
/// permanent redirect to another hostname.
#[derive(Clone)]
pub enum Target {
    Site(Arc<SiteRef>),
    Split(Arc<Split>),
    Redirect(Arc<str>),
}

impl Target {
    fn project(&self) -> Option<&ProjectName> {
        match self {
            Target::Site(site) => Some(&site.project),
            Target::Split(split) => split.variants.first().map(|(site, _)| &site.project),
            Target::Redirect(_) => None,
        }
    }
}

/// A wildcard domain's project, and whether the label below it names a
/// preview (else it serves production).
#[derive(Clone)]
struct Wildcard {
    project: ProjectName,
    previews: bool,
}

/// Deployments with cumulative weights: variant `i` takes draws below
/// its bound.
pub struct Split {
    pub variants: Vec<(Arc<SiteRef>, u32)>,
}

impl Split {
    /// The variant named `id` (a pin from the override header or cookie).
    pub fn pinned(&self, id: &str) -> Option<&Arc<SiteRef>> {
        self.variants.iter().map(|(s, _)| s).find(|s| s.deployment.as_str() == id)
    }

    /// The variant for a draw in `0..100`.
    pub fn draw(&self, percent: u32) -> &Arc<SiteRef> {
        let (site, _) = self
            .variants
            .iter()
            .find(|(_, upto)| percent < *upto)
            .unwrap_or_else(|| self.variants.last().expect("a split has at least one variant"));
        site
    }
}

/// The map requests read, and the state it is derived from.
pub(crate) struct Hosts {
    base_domain: String,
    map: papaya::HashMap<Box<str>, Target>,
    /// `rest` of each verified `*.rest`.
    wildcards: papaya::HashMap<Box<str>, Wildcard>,
    /// `<domain> <token>` of every claim not yet proven → its project.
    challenges: papaya::HashMap<Box<str>, ProjectName>,
    state: Mutex<State>,
}

/// A verified custom domain.
struct CustomDomain {
    project: ProjectName,
    previews: bool,
    redirect_to: Option<Arc<str>>,
}

/// What the events said so far.
#[derive(Default)]
struct State {
    deployments: HashMap<DeploymentId, Arc<SiteRef>>,
    production: HashMap<ProjectName, DeploymentId>,
    /// Projects whose production hostname splits traffic.
    splits: HashMap<ProjectName, Vec<(DeploymentId, u32)>>,
    /// Preview aliases: (project, alias) → deployment.
    aliases: HashMap<(ProjectName, String), DeploymentId>,
    /// Verified custom domains, by name.
    domains: HashMap<String, CustomDomain>,
}

impl Hosts {
    pub fn new(base_domain: String) -> Hosts {
        Hosts {
            base_domain,
            map: papaya::HashMap::new(),
            wildcards: papaya::HashMap::new(),
            challenges: papaya::HashMap::new(),
            state: Mutex::new(State::default()),
        }
    }

    /// What `host` (lowercase, no port) serves now.
    pub fn get(&self, host: &str) -> Option<Target> {
        let map = self.map.pin();
        if let Some(target) = map.get(host) {
            return Some(target.clone());
        }
        let (label, rest) = host.split_once('.')?;
        let wildcard = self.wildcards.pin().get(rest)?.clone();
        let served = if wildcard.previews {
            alias_host(label, &wildcard.project, &self.base_domain)
        } else {
            production_host(&wildcard.project, &self.base_domain)
        };
        map.get(served.as_str()).filter(|t| t.project() == Some(&wildcard.project)).cloned()
    }

    /// Whether `name` is under the base domain (the platform's own names).
    fn is_platform_name(&self, name: &str) -> bool {
        let name = name.strip_prefix("*.").unwrap_or(name);
        name == self.base_domain || name.strip_suffix(&self.base_domain).is_some_and(|head| head.ends_with('.'))
    }

    /// Whether `token` is the proof a claim on `host` waits for — and
    /// `host` serves nothing of another project's (a name under another
    /// project's wildcard is never proven through it).
    pub fn is_challenge(&self, host: &str, token: &str) -> bool {
        if self.challenges.is_empty() {
            return false;
        }
        let Some(project) = self.challenges.pin().get(format!("{host} {token}").as_str()).cloned() else {
            return false;
        };
        self.get(host).is_none_or(|served| served.project() == Some(&project))
    }

    /// A deployment made ready here, by id.
    pub fn deployment(&self, id: &DeploymentId) -> Option<Arc<SiteRef>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).deployments.get(id).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.map.pin().keys().map(|k| k.to_string()).collect()
    }

    /// Applies one event (idempotently): updates the state and rewrites the
    /// hostnames it touches. Returns the deployment that now serves a
    /// production or preview hostname, worth loading before a visitor asks.
    pub fn apply(&self, event: &Event) -> Option<Arc<SiteRef>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::DeployReady { project, deployment, manifest } => {
                self.add(&mut state, project, deployment, *manifest);
                None
            }
            Event::DeployPromoted { project, deployment, manifest }
            | Event::DeployRolledBack { project, deployment, manifest } => {
                let site = self.add(&mut state, project, deployment, *manifest);
                state.production.insert(project.clone(), deployment.clone());
                self.refresh_production(&state, project);
                Some(site)
            }
            Event::AliasSet { project, alias, deployment, manifest } => {
                let site = self.add(&mut state, project, deployment, *manifest);
                state.aliases.insert((project.clone(), alias.clone()), deployment.clone());
                self.refresh_alias(&state, project, alias);
                Some(site)
            }
            Event::AliasRemoved { project, alias } => {
                state.aliases.remove(&(project.clone(), alias.clone()));
                self.refresh_alias(&state, project, alias);
                None
            }
            Event::SplitChanged { project, variants } => {
                for v in variants {
                    self.add(&mut state, project, &v.deployment, v.manifest);
                }
                if variants.is_empty() {
                    state.splits.remove(project);
                } else {
                    let weights = variants.iter().map(|v| (v.deployment.clone(), v.weight)).collect();
                    state.splits.insert(project.clone(), weights);
                }
                self.refresh_production(&state, project);
                None
            }
            Event::DomainPending { project, domain, token } => {
                self.challenges.pin().insert(format!("{domain} {token}").into_boxed_str(), project.clone());
                None
            }
            // A custom domain never takes a name under the base domain (one
            // stored before the operator changed it, say).
            Event::DomainSet { domain, .. } if self.is_platform_name(domain) => None,
            Event::DomainSet { project, domain, previews, redirect_to } => {
                let redirect_to = redirect_to.as_deref().map(Arc::from);
                let custom = CustomDomain { project: project.clone(), previews: *previews, redirect_to };
                state.domains.insert(domain.clone(), custom);
                self.refresh_domain(&state, domain);
                None
            }
            Event::DomainRemoved { project, domain, token } => {
                self.challenges.pin().remove(format!("{domain} {token}").as_str());
                if state.domains.get(domain).is_some_and(|d| d.project == *project) {
                    state.domains.remove(domain);
                    self.refresh_domain(&state, domain);
                }
                None
            }
            // Nothing the edge serves changes; their numbers still count.
            Event::BuildRequested { .. }
            | Event::BuildFinished { .. }
            | Event::EnvChanged { .. }
            | Event::MemberChanged { .. }
            | Event::Unknown => None,
        }
    }

    /// Records a deployment and serves it at its own hostname (which wins
    /// over an alias spelled the same).
    fn add(&self, state: &mut State, project: &ProjectName, id: &DeploymentId, manifest: Digest) -> Arc<SiteRef> {
        if let Some(site) = state.deployments.get(id) {
            return site.clone();
        }
        let site = Arc::new(SiteRef { deployment: id.clone(), project: project.clone(), manifest });
        state.deployments.insert(id.clone(), site.clone());
        let host = deployment_host(id, project, &self.base_domain);
        self.map.pin().insert(host.into_boxed_str(), Target::Site(site.clone()));
        site
    }

    /// What the project's production hostname serves, from the state.
    fn production_target(state: &State, project: &ProjectName) -> Option<Target> {
        let split = state.splits.get(project).map(|weights| {
            let mut upto = 0;
            let variants: Vec<(Arc<SiteRef>, u32)> = weights
                .iter()
                .filter_map(|(id, weight)| {
                    upto += weight;
                    state.deployments.get(id).map(|site| (site.clone(), upto))
                })
                .collect();
            variants
        });
        match split {
            Some(variants) if !variants.is_empty() => Some(Target::Split(Arc::new(Split { variants }))),
            _ => state
                .production
                .get(project)
                .and_then(|id| state.deployments.get(id))
                .map(|site| Target::Site(site.clone())),
        }
    }

    /// Sets the production hostname and every exact custom domain that
    /// serves production.
    fn refresh_production(&self, state: &State, project: &ProjectName) {
        let target = Self::production_target(state, project);
        let mut hosts = vec![production_host(project, &self.base_domain)];
        hosts.extend(
            state
                .domains
                .iter()
                .filter(|(name, d)| d.project == *project && d.redirect_to.is_none() && !name.starts_with("*."))
                .map(|(name, _)| name.clone()),
        );
        let map = self.map.pin();
        for host in hosts {
            match &target {
                Some(t) => map.insert(host.into_boxed_str(), t.clone()),
                None => map.remove(host.as_str()),
            };
        }
    }

    /// Sets what custom domain `name` serves (nothing, once removed).
    fn refresh_domain(&self, state: &State, name: &str) {
        let custom = state.domains.get(name);
        if let Some(rest) = name.strip_prefix("*.") {
            let wildcards = self.wildcards.pin();
            match custom {
                Some(d) => wildcards.insert(rest.into(), Wildcard { project: d.project.clone(), previews: d.previews }),
                None => wildcards.remove(rest),
            };
            return;
        }
        let target = custom.and_then(|d| match &d.redirect_to {
            Some(to) => Some(Target::Redirect(to.clone())),
            None => Self::production_target(state, &d.project),
        });
        let map = self.map.pin();
        match target {
            Some(t) => map.insert(name.into(), t),
            None => map.remove(name),
        };
    }

    fn refresh_alias(&self, state: &State, project: &ProjectName, alias: &str) {
        // A deployment's own hostname is never taken over by an alias.
        if let Ok(id) = DeploymentId::parse(alias)
            && state.deployments.get(&id).is_some_and(|s| s.project == *project)
        {
            return;
        }
        let host: Box<str> = alias_host(alias, project, &self.base_domain).into_boxed_str();
        let target = state.aliases.get(&(project.clone(), alias.to_owned())).and_then(|id| state.deployments.get(id));
        let map = self.map.pin();
        match target {
            Some(site) => {
                map.insert(host, Target::Site(site.clone()));
            }
            None => {
                map.remove(&host);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use helix_core::events::SplitVariant;

    fn id(n: u64) -> DeploymentId {
        DeploymentId::generate(n, u128::from(n))
    }

    fn site_at(hosts: &Hosts, host: &str) -> Option<DeploymentId> {
        match hosts.get(host)? {
            Target::Site(s) => Some(s.deployment.clone()),
            Target::Split(_) | Target::Redirect(_) => None,
        }
    }

    #[test]
    fn events_set_exactly_the_hosts_they_are_about() {
        let hosts = Hosts::new("localhost".into());
        let p = ProjectName::parse("shop").unwrap();
        let (a, b) = (id(1), id(2));
        let m = Digest::of(b"m");
        hosts.apply(&Event::DeployReady { project: p.clone(), deployment: a.clone(), manifest: m });
        assert_eq!(site_at(&hosts, &format!("{a}--shop.localhost")), Some(a.clone()));
        assert!(hosts.get("shop.localhost").is_none(), "ready is not production");
        hosts.apply(&Event::DeployPromoted { project: p.clone(), deployment: b.clone(), manifest: m });
        assert_eq!(site_at(&hosts, "shop.localhost"), Some(b.clone()));
        let variants = vec![
            SplitVariant { deployment: a.clone(), manifest: m, weight: 50 },
            SplitVariant { deployment: b.clone(), manifest: m, weight: 50 },
        ];
        hosts.apply(&Event::SplitChanged { project: p.clone(), variants });
        assert!(matches!(hosts.get("shop.localhost"), Some(Target::Split(_))));
        hosts.apply(&Event::SplitChanged { project: p.clone(), variants: Vec::new() });
        assert_eq!(site_at(&hosts, "shop.localhost"), Some(b.clone()));
        hosts.apply(&Event::AliasSet { project: p.clone(), alias: "feat".into(), deployment: a.clone(), manifest: m });
        assert_eq!(site_at(&hosts, "feat--shop.localhost"), Some(a.clone()));
        hosts.apply(&Event::AliasRemoved { project: p.clone(), alias: "feat".into() });
        assert!(hosts.get("feat--shop.localhost").is_none());
        // An alias spelled like a deployment id never takes its hostname.
        hosts.apply(&Event::AliasSet { project: p.clone(), alias: a.to_string(), deployment: b.clone(), manifest: m });
        assert_eq!(site_at(&hosts, &format!("{a}--shop.localhost")), Some(a.clone()));
        hosts.apply(&Event::AliasRemoved { project: p, alias: a.to_string() });
        assert_eq!(site_at(&hosts, &format!("{a}--shop.localhost")), Some(a));
    }

    #[test]
    fn custom_domains_follow_production_and_wildcards_stay_in_their_project() {
        let hosts = Hosts::new("localhost".into());
        let (shop, other) = (ProjectName::parse("shop").unwrap(), ProjectName::parse("other").unwrap());
        let (a, b, c) = (id(1), id(2), id(3));
        let m = Digest::of(b"m");
        hosts.apply(&Event::DeployPromoted { project: shop.clone(), deployment: a.clone(), manifest: m });
        let set = |domain: &str, previews, redirect_to: Option<&str>| Event::DomainSet {
            project: shop.clone(),
            domain: domain.into(),
            previews,
            redirect_to: redirect_to.map(str::to_owned),
        };
        hosts.apply(&set("shop.example.com", false, None));
        hosts.apply(&set("www.example.com", false, Some("shop.example.com")));
        hosts.apply(&set("*.preview.example.com", true, None));
        assert_eq!(site_at(&hosts, "shop.example.com"), Some(a.clone()));
        assert!(matches!(hosts.get("www.example.com"), Some(Target::Redirect(to)) if &*to == "shop.example.com"));
        hosts.apply(&Event::DeployPromoted { project: shop.clone(), deployment: b.clone(), manifest: m });
        assert_eq!(site_at(&hosts, "shop.example.com"), Some(b.clone()), "the domain follows production");

        // Previews: the branch alias or the deployment the label names, of
        // this project only.
        hosts.apply(&Event::AliasSet {
            project: shop.clone(),
            alias: "feat".into(),
            deployment: a.clone(),
            manifest: m,
        });
        hosts.apply(&Event::AliasSet { project: other.clone(), alias: "x".into(), deployment: c.clone(), manifest: m });
        assert_eq!(site_at(&hosts, "feat.preview.example.com"), Some(a.clone()));
        assert_eq!(site_at(&hosts, &format!("{b}.preview.example.com")), Some(b.clone()));
        assert_eq!(site_at(&hosts, &format!("{c}.preview.example.com")), None, "another project's deployment");
        assert_eq!(site_at(&hosts, "x.preview.example.com"), None);

        // Only the project that set a domain removes it.
        hosts.apply(&Event::DomainRemoved { project: other, domain: "shop.example.com".into(), token: "t".into() });
        assert_eq!(site_at(&hosts, "shop.example.com"), Some(b));
        hosts.apply(&Event::DomainRemoved {
            project: shop.clone(),
            domain: "shop.example.com".into(),
            token: "t".into(),
        });
        hosts.apply(&Event::DomainRemoved {
            project: shop.clone(),
            domain: "*.preview.example.com".into(),
            token: "t".into(),
        });
        assert!(hosts.get("shop.example.com").is_none());
        assert!(hosts.get("feat.preview.example.com").is_none());

        // Nothing under the base domain is ever a custom domain.
        hosts.apply(&set("x.localhost", false, None));
        assert!(hosts.get("x.localhost").is_none());

        // A name under another project's wildcard is never proven here.
        hosts.apply(&set("*.apps.example.com", false, None));
        let intruder = ProjectName::parse("intruder").unwrap();
        hosts.apply(&Event::DomainPending {
            project: intruder,
            domain: "x.apps.example.com".into(),
            token: "t2".into(),
        });
        assert!(!hosts.is_challenge("x.apps.example.com", "t2"));

        // A claim not yet proven answers only its own token.
        hosts.apply(&Event::DomainPending { project: shop, domain: "new.example.com".into(), token: "tok".into() });
        assert!(hosts.is_challenge("new.example.com", "tok"));
        assert!(!hosts.is_challenge("new.example.com", "other"));
        assert!(!hosts.is_challenge("shop.example.com", "tok"));
        assert!(hosts.get("new.example.com").is_none());
    }
}
