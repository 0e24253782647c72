//! Custom domains: a project claims a name, proves it controls it (a TXT
//! record, or — an exact name whose DNS points at the edge already — the
//! edge answering a token over HTTP), and the edge serves it from then on.
//! A verified name is one project's alone. Every change is a
//! `domain.change` policy decision and an audit entry, and reaches the
//! edges as an event; the answer waits until they serve it.
//!
//! A pending claim is checked again in the background (`--domain-recheck-secs`,
//! every minute in its first hour, every ten after, for a week), so a
//! record created after `add` verifies the domain without another command.
//!
//! Lookups go to the resolver `--dns-server` names (`HELIX_DNS_SERVER`),
//! else to the system's. The HTTP proof is a GET of one fixed path on the
//! edge's public port, to the addresses that resolver gives, with a short
//! timeout and a 512-byte body read: all that comes back is whether the
//! body was the token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use helix_core::api::{AddDomain, Domain};
use helix_core::domains::{CHALLENGE_PATH, CustomDomain, MAX_DOMAINS_PER_PROJECT, txt_value};
use helix_store::{Claim, DomainRow, NewDomain, ProjectRef, Verified};
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, TokioResolver};

use crate::access::{Ctx, Need};
use crate::policy::Decision;
use crate::problem::ApiError;
use crate::{ControlPlane, now_ms};

/// How long one lookup or one HTTP proof may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// A pending claim is checked in the background for this long.
const RECHECK_FOR_MS: i64 = 7 * 24 * 3600 * 1000;

/// Pending claims checked in one background round, at most, and for how
/// long at most.
const RECHECK_BATCH: i64 = 20;
const RECHECK_ROUND_BUDGET: Duration = Duration::from_secs(20);

/// Addresses of a name the HTTP proof tries, at most.
const MAX_ADDRESSES: usize = 4;

pub(crate) fn view(row: &DomainRow) -> Domain {
    let domain = CustomDomain { name: row.name.clone() };
    let or_http = if domain.is_wildcard() { "" } else { " (or point the name's A/CNAME record at this server)" };
    let hint = row.verified_at_ms.is_none().then(|| {
        format!(
            "create a TXT record {} with the value {}{or_http}, then run `helix domains verify {}`",
            domain.txt_name(),
            txt_value(&row.token),
            row.name
        )
    });
    Domain {
        name: row.name.clone(),
        project: row.project.to_string(),
        previews: row.previews,
        redirect_to: row.redirect_to.clone(),
        verified: row.verified_at_ms.is_some(),
        verified_at_ms: row.verified_at_ms,
        txt_name: domain.txt_name(),
        txt_value: txt_value(&row.token),
        http_path: (!domain.is_wildcard()).then(|| format!("{CHALLENGE_PATH}{}", row.token)),
        last_error: row.last_error.clone(),
        last_checked_ms: row.last_checked_ms,
        created_at_ms: row.created_at_ms,
        hint,
        propagation: None,
    }
}

fn taken(name: &str) -> ApiError {
    ApiError::Conflict(format!("{name} is verified by another project; a verified domain belongs to one project only"))
}

impl ControlPlane {
    pub(crate) async fn add_domain(&self, ctx: &Ctx, project: &str, req: &AddDomain) -> Result<Domain, ApiError> {
        let project = self.project_for(ctx, project, Need::MANAGE, "manage domains").await?;
        let domain = CustomDomain::parse(&req.name, &self.edge.base_domain).map_err(ApiError::BadRequest)?;
        if req.previews && !domain.is_wildcard() {
            return Err(ApiError::BadRequest(format!(
                "previews are served under a wildcard (like *.{}), not under {}",
                domain.base(),
                domain.name
            )));
        }
        let redirect_to = match &req.redirect_to {
            None => None,
            Some(to) => Some(self.redirect_target(&project, &domain, to).await?),
        };
        let request = serde_json::json!({
            "op": "add", "domain": domain.name, "previews": req.previews, "redirect_to": redirect_to,
        });
        self.decide_domain(ctx, &project, request).await?;
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).map_err(|e| ApiError::Internal(e.to_string()))?;
        let token = hex::encode(raw);
        let new = NewDomain {
            project_id: &project.id,
            name: &domain.name,
            token: &token,
            previews: req.previews,
            redirect_to: redirect_to.as_deref(),
            max: MAX_DOMAINS_PER_PROJECT,
        };
        let detail = serde_json::json!({ "previews": req.previews, "redirect_to": redirect_to });
        let audit =
            helix_store::NewAudit { target: Some(&domain.name), ..ctx.audit_on(&project, "domain.add", detail) };
        let row = match self.store.domains().add_domain(new, &audit).await? {
            Claim::Added(row, _) => {
                self.publish_soon();
                row
            }
            Claim::Exists(row) if row.previews == req.previews && row.redirect_to == redirect_to => row,
            Claim::Exists(_) => {
                return Err(ApiError::Conflict(format!(
                    "project {} has {} already, with other settings; remove it first to change them",
                    project.name, domain.name
                )));
            }
            Claim::Taken => return Err(taken(&domain.name)),
            Claim::TooMany => {
                return Err(ApiError::Conflict(format!(
                    "a project has at most {MAX_DOMAINS_PER_PROJECT} domains; {} has as many",
                    project.name
                )));
            }
        };
        if row.verified_at_ms.is_some() {
            return Ok(view(&row));
        }
        // Try the proof once now: a record set up beforehand needs no
        // second command.
        self.prove_and_verify(Some(ctx), &project, row).await
    }

    /// The other domain a redirect goes to: the project's, exact, not the
    /// domain itself.
    async fn redirect_target(&self, project: &ProjectRef, domain: &CustomDomain, to: &str) -> Result<String, ApiError> {
        let target = CustomDomain::parse(to, &self.edge.base_domain).map_err(ApiError::BadRequest)?;
        if domain.is_wildcard() || target.is_wildcard() {
            return Err(ApiError::BadRequest("a redirect is from one exact name to another, not a wildcard".into()));
        }
        if target.name == domain.name {
            return Err(ApiError::BadRequest(format!("{} cannot redirect to itself", domain.name)));
        }
        match self.store.domains().domain(&project.id, &target.name).await? {
            None => Err(ApiError::BadRequest(format!(
                "{} redirects only to a domain of project {}: add {} first",
                domain.name, project.name, target.name
            ))),
            Some(t) if t.redirect_to.is_some() => Err(ApiError::BadRequest(format!(
                "{} redirects to {} itself; redirect to a domain that serves the project",
                target.name,
                t.redirect_to.as_deref().unwrap_or_default()
            ))),
            Some(_) => Ok(target.name),
        }
    }

    async fn decide_domain(&self, ctx: &Ctx, project: &ProjectRef, request: serde_json::Value) -> Result<(), ApiError> {
        let decision = Decision { action: "domain.change", project: Some(project), request, ..Decision::default() };
        self.decide_for(ctx, decision).await
    }

    pub(crate) async fn verify_domain(&self, ctx: &Ctx, project: &str, name: &str) -> Result<Domain, ApiError> {
        let project = self.project_for(ctx, project, Need::MANAGE, "manage domains").await?;
        let row = self.claim_of(&project, name).await?;
        if row.verified_at_ms.is_some() {
            return Ok(view(&row));
        }
        self.decide_domain(ctx, &project, serde_json::json!({ "op": "verify", "domain": row.name })).await?;
        self.prove_and_verify(Some(ctx), &project, row).await
    }

    /// Checks pending claims until the process ends.
    pub fn spawn_domain_checker(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let cp = self.clone();
        tokio::spawn(async move {
            let Some(every) = cp.domain_recheck else { return };
            loop {
                if let Err(e) = cp.recheck_pending().await {
                    tracing::warn!(error = %e, "checking pending domains: will retry");
                }
                tokio::time::sleep(every).await;
            }
        })
    }

    /// One background round: the pending claims due, each proven or its
    /// reason recorded (which makes it due again only later).
    async fn recheck_pending(&self) -> Result<(), ApiError> {
        let Some(every) = self.domain_recheck else { return Ok(()) };
        let every_ms = every.as_millis() as i64;
        let now = now_ms();
        let due = self.store.domains().pending_due(now, every_ms, RECHECK_FOR_MS, RECHECK_BATCH).await?;
        let started = std::time::Instant::now();
        for row in due {
            // A round never runs long, however slow one tenant's names are
            // to look up: the rest wait for the next round.
            if started.elapsed() > RECHECK_ROUND_BUDGET {
                break;
            }
            let Some(project) = self.store.identity().project_ref(row.project.as_str()).await? else { continue };
            if let Err(e) = self.prove_and_verify(None, &project, row).await {
                tracing::debug!(error = %e, "a pending domain stays pending");
            }
        }
        Ok(())
    }

    /// The project's claim on `name` (spelled as a user may: case, IDN).
    /// Not checked against the base domain: a claim stored before the
    /// operator changed it can still be removed.
    async fn claim_of(&self, project: &ProjectRef, name: &str) -> Result<DomainRow, ApiError> {
        let domain = CustomDomain::parse(name, "").map_err(ApiError::BadRequest)?;
        self.store
            .domains()
            .domain(&project.id, &domain.name)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("project {} has no domain {}", project.name, domain.name)))
    }

    /// Checks the proof; verified (and served) when it holds, the reason
    /// recorded when not. `ctx`: the caller, or `None` for the background
    /// check (audited as `system`).
    async fn prove_and_verify(
        &self,
        ctx: Option<&Ctx>,
        project: &ProjectRef,
        row: DomainRow,
    ) -> Result<Domain, ApiError> {
        let domain = CustomDomain { name: row.name.clone() };
        // A name another project claims too is proven by its TXT record
        // only: its DNS pointing here says nothing about which project.
        let others: Vec<(helix_core::ProjectName, bool)> =
            self.store.domains().claimants(&row.name).await?.into_iter().filter(|(p, _)| *p != row.project).collect();
        if others.iter().any(|(_, verified)| *verified) {
            self.store.domains().record_check(&project.id, &row.name, &taken(&row.name).to_string(), now_ms()).await?;
            return Err(taken(&row.name));
        }
        let contested = !others.is_empty();
        if let Err(why) = self.prove(&domain, &row.token, !contested).await {
            self.store.domains().record_check(&project.id, &row.name, &why, now_ms()).await?;
            let row = self.claim_of(project, &row.name).await?;
            return Ok(view(&row));
        }
        let audit = match ctx {
            Some(ctx) => ctx.audit_on(project, "domain.verify", serde_json::json!({})),
            None => {
                let detail = serde_json::json!({ "by": "background check" });
                let audit =
                    crate::identity::system_audit(&project.org, Some(&project.name), "domain.verify", detail, now_ms());
                // The policy in force now decides, as it would for a person.
                let request = serde_json::json!({ "op": "verify", "domain": row.name });
                let decision =
                    Decision { action: "domain.change", project: Some(project), request, ..Decision::default() };
                let input = crate::policy::document(&decision, serde_json::json!({ "kind": "system" }), now_ms());
                self.decide(&project.org_id, audit.clone(), &input).await?;
                audit
            }
        };
        let audit = helix_store::NewAudit { target: Some(&row.name), ..audit };
        match self.store.domains().verify_domain(&project.id, &row.name, &audit).await? {
            Verified::Now(row, seq) => {
                let propagation = self.committed(Some(seq)).await?;
                Ok(Domain { propagation: Some(propagation), ..view(&row) })
            }
            Verified::Already(row) => Ok(view(&row)),
            Verified::Taken => {
                self.store
                    .domains()
                    .record_check(&project.id, &row.name, &taken(&row.name).to_string(), now_ms())
                    .await?;
                Err(taken(&row.name))
            }
            Verified::Unknown => {
                Err(ApiError::NotFound(format!("project {} has no domain {}", project.name, row.name)))
            }
        }
    }

    pub(crate) async fn remove_domain(&self, ctx: &Ctx, project: &str, name: &str) -> Result<Domain, ApiError> {
        let project = self.project_for(ctx, project, Need::MANAGE, "manage domains").await?;
        let row = self.claim_of(&project, name).await?;
        let others = self.store.domains().domains_of(&project.id).await?;
        if let Some(from) = others.iter().find(|d| d.redirect_to.as_deref() == Some(row.name.as_str())) {
            return Err(ApiError::Conflict(format!(
                "{} redirects to {}: remove {} first",
                from.name, row.name, from.name
            )));
        }
        self.decide_domain(ctx, &project, serde_json::json!({ "op": "remove", "domain": row.name })).await?;
        let audit = helix_store::NewAudit {
            target: Some(&row.name),
            ..ctx.audit_on(&project, "domain.remove", serde_json::json!({}))
        };
        let Some((row, seq)) = self.store.domains().remove_domain(&project.id, &row.name, &audit).await? else {
            return Err(ApiError::NotFound(format!("project {} has no domain {}", project.name, row.name)));
        };
        let propagation = self.committed(Some(seq)).await?;
        Ok(Domain { propagation: Some(propagation), ..view(&row) })
    }

    pub(crate) async fn project_domains(&self, ctx: &Ctx, project: &str) -> Result<Vec<Domain>, ApiError> {
        let project = self.project_for(ctx, project, Need::READ, "read domains").await?;
        Ok(self.store.domains().domains_of(&project.id).await?.iter().map(view).collect())
    }

    /// Every domain of the projects the caller may read.
    pub(crate) async fn all_domains(&self, ctx: &Ctx) -> Result<Vec<Domain>, ApiError> {
        let org = (!ctx.actor.token.server_admin).then(|| ctx.actor.org_id());
        let rows = self.store.domains().domains_in(org).await?;
        let mut readable = std::collections::HashMap::new();
        let mut out = Vec::new();
        for row in rows {
            let may = match readable.get(row.project.as_str()) {
                Some(may) => *may,
                None => {
                    let found = self.store.identity().project_ref(row.project.as_str()).await?;
                    let may = found.is_some_and(|p| ctx.check(&p, Need::READ, "read domains").is_ok());
                    readable.insert(row.project.to_string(), may);
                    may
                }
            };
            if may {
                out.push(view(&row));
            }
        }
        Ok(out)
    }

    /// `Ok` when the TXT record holds the token, or (an exact name no
    /// other project claims) the edge answers it on the name; else what
    /// each check found.
    async fn prove(&self, domain: &CustomDomain, token: &str, http_allowed: bool) -> Result<(), String> {
        let resolver = self.resolver()?;
        let expected = txt_value(token);
        let txt_name = domain.txt_name();
        let txt_problem = match tokio::time::timeout(CHECK_TIMEOUT, resolver.txt_lookup(format!("{txt_name}."))).await {
            Err(_) => format!("the TXT lookup of {txt_name} timed out"),
            Ok(Ok(found)) => {
                let values: Vec<String> = found
                    .iter()
                    .map(|txt| txt.txt_data().iter().map(|part| String::from_utf8_lossy(part)).collect())
                    .collect();
                if values.iter().any(|v| v.trim() == expected) {
                    return Ok(());
                }
                format!("TXT {txt_name} holds {} record(s), none of them {expected}", values.len())
            }
            Ok(Err(e)) if no_records(&e) => format!("there is no TXT record {txt_name}"),
            Ok(Err(e)) => format!("the TXT lookup of {txt_name} failed: {e}"),
        };
        if domain.is_wildcard() {
            return Err(format!("{txt_problem} (a wildcard is proven by its TXT record only)"));
        }
        if !http_allowed {
            return Err(format!(
                "{txt_problem} (another project claims this name too, so only its TXT record proves it)"
            ));
        }
        match self.http_proof(&resolver, &domain.name, token).await {
            Ok(()) => Ok(()),
            Err(http_problem) => Err(format!("{txt_problem}; {http_problem}")),
        }
    }

    async fn http_proof(&self, resolver: &TokioResolver, name: &str, token: &str) -> Result<(), String> {
        let port = if self.edge.scheme == "http" { self.edge.port } else { 80 };
        let url = format!("http://{name}:{port}{CHALLENGE_PATH}{token}");
        let ips = match tokio::time::timeout(CHECK_TIMEOUT, resolver.lookup_ip(format!("{name}."))).await {
            Err(_) => return Err(format!("the address lookup of {name} timed out")),
            Ok(Err(e)) if no_records(&e) => return Err(format!("{name} has no address to check {url} at")),
            Ok(Err(e)) => return Err(format!("the address lookup of {name} failed: {e}")),
            Ok(Ok(ips)) => ips.iter().take(MAX_ADDRESSES).collect::<Vec<_>>(),
        };
        // Only this machine's own addresses can be the edge the name is
        // meant to reach; any other is never contacted (a tenant's name
        // must not make the control plane probe other hosts), and what
        // came back is never repeated, only whether it was the token.
        let own = helix_http::guard::own_addresses();
        let elsewhere = format!("{name} does not point at this server ({url} does not answer the token)");
        for ip in ips {
            if !(ip.is_loopback() || own.contains(&ip)) {
                continue;
            }
            if fetch_token(name, SocketAddr::new(ip, port), &url).await.is_ok_and(|body| body.trim() == token) {
                return Ok(());
            }
        }
        Err(elsewhere)
    }

    fn resolver(&self) -> Result<TokioResolver, String> {
        let provider = TokioConnectionProvider::default();
        let mut builder = match self.dns_server {
            Some(server) => {
                let servers = NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
                TokioResolver::builder_with_config(ResolverConfig::from_parts(None, Vec::new(), servers), provider)
            }
            None => TokioResolver::builder(provider).map_err(|e| format!("the system's resolver: {e}"))?,
        };
        let options = builder.options_mut();
        options.timeout = CHECK_TIMEOUT;
        options.attempts = 1;
        options.cache_size = 0;
        Ok(builder.build())
    }
}

fn no_records(e: &ResolveError) -> bool {
    e.is_no_records_found() || e.is_nx_domain()
}

/// GET `url` at `addr` only (no redirects), at most 512 bytes of body.
async fn fetch_token(name: &str, addr: SocketAddr, url: &str) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .resolve(name, addr)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(CHECK_TIMEOUT)
        .user_agent("HelixStack-DomainCheck/1")
        .build()
        .map_err(|e| e.to_string())?;
    let mut resp = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("answered {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        body.extend_from_slice(&chunk);
        if body.len() > 512 {
            return Err("answered more than a token".into());
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}
