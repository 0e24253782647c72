//! The guard on outbound requests a tenant's configuration makes (proxy
//! rules, outgoing webhooks, commit statuses): a DNS resolver for `reqwest` that refuses
//! internal and this machine's own addresses, and the check for literal
//! addresses, which skip the resolver.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use helix_core::net::{Cidr, internal_reason};

/// Which destinations a tenant-configured outbound request may reach:
/// none of this machine's own or internal addresses (loopback, private,
/// link-local and metadata ranges), unless the operator allows them.
pub struct Guard {
    allow_nets: Vec<Cidr>,
    allow_hosts: Vec<String>,
    flag: &'static str,
    /// This machine's addresses, read again when older than a few seconds.
    own: Mutex<(Instant, Arc<Vec<IpAddr>>)>,
}

/// How long the list of this machine's addresses is trusted.
const OWN_ADDRESSES_TTL: Duration = Duration::from_secs(5);

impl Guard {
    /// `flag` names the setting that allows more, for the messages.
    pub fn new(allow: &[String], flag: &'static str) -> Result<Guard, String> {
        let mut allow_nets = Vec::new();
        let mut allow_hosts = Vec::new();
        for entry in allow.iter().map(|a| a.trim()).filter(|a| !a.is_empty()) {
            match Cidr::parse(entry) {
                Some(net) => allow_nets.push(net),
                None if entry.contains('/') => {
                    return Err(format!("{flag} {entry:?} is not a valid CIDR (e.g. 10.0.0.0/8)"));
                }
                None => allow_hosts.push(entry.trim_end_matches('.').to_ascii_lowercase()),
            }
        }
        Ok(Guard { allow_nets, allow_hosts, flag, own: Mutex::new((Instant::now(), Arc::new(own_addresses()))) })
    }

    /// Whether a proxy rule may connect to `ip` (for host `name`).
    pub fn check(&self, name: Option<&str>, ip: IpAddr) -> Result<(), String> {
        if name.is_some_and(|n| self.allow_hosts.iter().any(|h| h.eq_ignore_ascii_case(n.trim_end_matches('.')))) {
            return Ok(());
        }
        if self.allow_nets.iter().any(|net| net.contains(ip)) {
            return Ok(());
        }
        match internal_reason(ip, &self.own()) {
            None => Ok(()),
            Some(why) => Err(format!("{ip} is {why}; allow it with {}", self.flag)),
        }
    }

    /// Whether a request to `url` may go, for a host written as an
    /// address (those skip the resolver); names are checked as resolved.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), String> {
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            _ => return Ok(()),
        };
        self.check(None, literal)
    }

    /// An HTTP client that resolves names through this guard, follows no
    /// redirect (a redirect could lead anywhere) and ignores proxy
    /// settings of the environment.
    pub fn client(self: &Arc<Self>, timeout: Duration, user_agent: &str) -> Result<reqwest::Client, String> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent(user_agent)
            .dns_resolver(self.clone())
            .no_proxy()
            .build()
            .map_err(|e| format!("building an HTTP client: {e}"))
    }

    fn own(&self) -> Arc<Vec<IpAddr>> {
        let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        if own.0.elapsed() > OWN_ADDRESSES_TTL {
            *own = (Instant::now(), Arc::new(own_addresses()));
        }
        own.1.clone()
    }
}

/// Every address of every interface of this machine.
pub fn own_addresses() -> Vec<IpAddr> {
    if_addrs::get_if_addrs().map(|list| list.into_iter().map(|i| i.ip()).collect()).unwrap_or_default()
}

/// A destination the guard refused, as the resolver reports it.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let allowed_host = self.allow_hosts.iter().any(|h| h.eq_ignore_ascii_case(host.trim_end_matches('.')));
        let (nets, own, flag) = (self.allow_nets.clone(), self.own(), self.flag);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(Box::new(std::io::Error::other(format!("{host} has no address"))) as _);
            }
            let mut refused = None;
            let ok: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| {
                    if allowed_host || nets.iter().any(|n| n.contains(a.ip())) {
                        return true;
                    }
                    match internal_reason(a.ip(), &own) {
                        None => true,
                        Some(why) => {
                            refused.get_or_insert_with(|| {
                                format!("{host} resolves to {} ({why}); allow it with {flag}", a.ip())
                            });
                            false
                        }
                    }
                })
                .collect();
            if ok.is_empty() {
                let why = refused.unwrap_or_else(|| format!("{host} has no allowed address"));
                return Err(Box::new(Refused(why)) as _);
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The guard's reason, when that is why a request failed.
pub fn refusal_of(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r.0.clone());
        }
        source = err.source();
    }
    None
}
