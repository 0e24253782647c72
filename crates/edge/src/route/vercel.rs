//! Vercel's order (SPEC §3.1): `cleanUrls` and `trailingSlash` 308s, then
//! `redirects` (files do not shadow them; a legacy route's `dest` before
//! the filesystem is a rewrite here), the filesystem (static files, then
//! `api/` functions), `rewrites` (their target checked against the
//! filesystem again), and `404.html`.

use super::target::{confine, on_this_site, path_part, render_path, render_url, with_query};
use super::{CompiledRule, Outcome, RequestFacts, RouteNotes, Router, not_found_page};
use crate::files::{Files, ServedFile};

use super::target::Captures;

pub(super) fn route<'s>(
    router: &'s Router,
    files: &'s Files,
    req: &RequestFacts<'_>,
    notes: &mut RouteNotes,
) -> Outcome<'s> {
    let path = req.path;
    if let Some(to) = canonical(router, path) {
        return Outcome::Redirect { status: 308, location: with_query(on_this_site(to), req.query) };
    }
    for (r, caps) in router.redirects.matching(path, notes) {
        if !r.request_conditions_hold(req) {
            continue;
        }
        if !(300..400).contains(&r.status) {
            return rewrite(router, files, req, r, &caps);
        }
        let location = confine(&r.to, render_url(&r.to, &caps));
        return Outcome::Redirect { status: r.status, location: with_query(location, req.query) };
    }
    if let Some(file) = lookup(router, files, path) {
        return Outcome::File { file, status: 200, rewritten: None };
    }
    if let Some(chosen) = function(router, req, path) {
        return Outcome::Function(chosen);
    }
    for (r, caps) in router.rewrites.matching(path, notes) {
        if r.request_conditions_hold(req) {
            return rewrite(router, files, req, r, &caps);
        }
    }
    not_found_page(files, "/404.html")
}

/// A rewrite: another origin is proxied, a path is looked up.
fn rewrite<'s>(
    router: &'s Router,
    files: &'s Files,
    req: &RequestFacts<'_>,
    rule: &'s CompiledRule,
    caps: &Captures<'_>,
) -> Outcome<'s> {
    if rule.to.is_absolute() {
        return Outcome::Proxy {
            url: with_query(confine(&rule.to, render_url(&rule.to, caps)), req.query),
            headers: rule.proxy_headers(),
        };
    }
    let target = render_path(&rule.to, caps);
    let target_path = match path_part(&target) {
        "" => "/",
        p => p,
    };
    if let Some(file) = lookup(router, files, target_path) {
        return Outcome::File { file, status: rule.status, rewritten: None };
    }
    match function(router, req, target_path) {
        Some(mut chosen) => {
            // The destination's query, then the source's parameters and
            // the request's query for keys it does not set.
            let own = target.split_once('?').map_or("", |(_, q)| q);
            let mut query: Vec<String> = own.split('&').filter(|p| !p.is_empty()).map(str::to_owned).collect();
            let key = |pair: &str| pair.split('=').next().unwrap_or_default().to_owned();
            let mut keys: Vec<String> = query.iter().map(|p| key(p)).collect();
            // The source's parameters join the query (Vercel passes them on).
            for (name, value) in caps.named() {
                if !keys.iter().any(|k| k == name) {
                    let value = percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC);
                    query.push(format!("{name}={value}"));
                    keys.push(name.to_owned());
                }
            }
            for pair in req.query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
                if !keys.contains(&key(pair)) {
                    query.push(pair.to_owned());
                }
            }
            chosen.rewritten = Some(if query.is_empty() {
                target_path.to_owned()
            } else {
                format!("{target_path}?{}", query.join("&"))
            });
            Outcome::Function(chosen)
        }
        None => not_found_page(files, "/404.html"),
    }
}

/// The `api/` function at `path`, if functions may answer.
fn function<'s>(router: &'s Router, req: &RequestFacts<'_>, path: &str) -> Option<super::functions::Chosen<'s>> {
    if !req.functions {
        return None;
    }
    router.functions.find(helix_core::functions::Shape::Vercel, path, req.method)
}

/// The 308 target of `cleanUrls` and `trailingSlash`, if the path is not
/// in its canonical form.
fn canonical(router: &Router, path: &str) -> Option<String> {
    let slash = router.trailing_slash == Some(true);
    if router.clean_urls {
        let p = if path.len() > 1 { path.strip_suffix('/').unwrap_or(path) } else { path };
        let stripped = p
            .strip_suffix("/index.html")
            .or_else(|| p.strip_suffix("/index"))
            .or_else(|| p.strip_suffix(".html").filter(|s| !s.is_empty()));
        if let Some(base) = stripped {
            let base = if base.is_empty() { "/" } else { base };
            let to = if slash && base != "/" { format!("{base}/") } else { base.to_owned() };
            return Some(to);
        }
    }
    match router.trailing_slash {
        Some(true) if !path.starts_with("/.well-known") => {
            let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
            let file_like = last
                .rsplit_once('.')
                .is_some_and(|(_, ext)| !ext.is_empty() && ext.chars().all(|c| c.is_alphanumeric() || c == '_'));
            if path != "/" && !path.ends_with('/') && !last.contains('.') {
                Some(format!("{path}/"))
            } else if path.len() > 1 && path.ends_with('/') && file_like {
                Some(path.trim_end_matches('/').to_owned())
            } else {
                None
            }
        }
        Some(false) if path.len() > 1 && path.ends_with('/') => Some(path.trim_end_matches('/').to_owned()),
        _ => None,
    }
}

/// A file at `path`, its directory's `index.html`, or with `cleanUrls`
/// the `.html` file.
fn lookup<'s>(router: &Router, files: &'s Files, path: &str) -> Option<&'s ServedFile> {
    if let Some(f) = files.get(path) {
        return Some(f);
    }
    let dir = path.trim_end_matches('/');
    files
        .get(&format!("{dir}/index.html"))
        .or_else(|| if router.clean_urls && !dir.is_empty() { files.get(&format!("{dir}.html")) } else { None })
}
