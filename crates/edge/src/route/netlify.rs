//! Netlify's order (SPEC §1.7), also HelixStack's own for `helix.toml`:
//! edge functions (which may answer, rewrite or pass the request on); a
//! function whose path matches (unless it prefers a static file that
//! exists); the first matching rule whose query and conditions hold (a
//! file at the path wins over it unless the rule is forced; a 200 rule may
//! rewrite to a function); then pretty URLs, then, for `helix.toml`
//! projects, Vercel-style `api/` functions; then `/404.html`.

use helix_core::functions::Shape;
use helix_core::routes::Platform;

use super::target::{confine, path_part, render_path, render_url, with_query};
use super::{Outcome, RequestFacts, RouteNotes, Router, not_found_page, pretty_lookup};
use crate::files::Files;

pub(super) fn route<'s>(
    router: &'s Router,
    files: &'s Files,
    req: &RequestFacts<'_>,
    notes: &mut RouteNotes,
) -> Outcome<'s> {
    if req.functions
        && !req.after_edge
        && let Some(chosen) = router.functions.find(Shape::NetlifyEdge, req.path, req.method)
    {
        return Outcome::Function(chosen);
    }
    if req.functions
        && let Some(chosen) = router.functions.find(Shape::Netlify, req.path, req.method)
        && !(chosen.function.prefer_static && pretty_lookup(files, req.path).is_some())
    {
        return Outcome::Function(chosen);
    }
    for (rule, mut caps) in router.redirects.matching(req.path, notes) {
        if !rule.netlify_conditions_hold(req, &mut caps) || !rule.request_conditions_hold(req) {
            continue;
        }
        if !rule.force && pretty_lookup(files, req.path).is_some() {
            break;
        }
        // A rule that matched on the query consumed it.
        let passthrough = if rule.matches_query() { None } else { req.query };
        return match rule.status {
            300..=399 => {
                let location = confine(&rule.to, render_url(&rule.to, &caps));
                Outcome::Redirect { status: rule.status, location: with_query(location, passthrough) }
            }
            200 if rule.to.is_absolute() => Outcome::Proxy {
                url: with_query(confine(&rule.to, render_url(&rule.to, &caps)), passthrough),
                headers: rule.proxy_headers(),
            },
            status => {
                let target = render_path(&rule.to, &caps);
                let path = path_part(&target);
                if req.functions
                    && let Some(chosen) = router.functions.find(Shape::Netlify, path, req.method)
                {
                    return Outcome::Function(chosen);
                }
                match pretty_lookup(files, path) {
                    Some(file) => Outcome::File { file, status, rewritten: Some(path.to_owned()) },
                    None => not_found_page(files, "/404.html"),
                }
            }
        };
    }
    if let Some(file) = pretty_lookup(files, req.path) {
        return Outcome::File { file, status: 200, rewritten: None };
    }
    if req.functions
        && router.platform == Platform::Helix
        && let Some(chosen) = router.functions.find(Shape::Vercel, req.path, req.method)
    {
        return Outcome::Function(chosen);
    }
    not_found_page(files, "/404.html")
}
