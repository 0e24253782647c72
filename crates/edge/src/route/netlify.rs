//! Netlify's order (SPEC §1.7), also HelixStack's own for `helix.toml`:
//! the first matching rule whose query and conditions hold wins; a file at
//! the path wins over it unless the rule is forced; then pretty URLs, then
//! `/404.html`.

use super::target::{confine, path_part, render_path, render_url, with_query};
use super::{Outcome, RequestFacts, RouteNotes, Router, not_found_page, pretty_lookup};
use crate::files::Files;

pub(super) fn route<'s>(
    router: &'s Router,
    files: &'s Files,
    req: &RequestFacts<'_>,
    notes: &mut RouteNotes,
) -> Outcome<'s> {
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
                match pretty_lookup(files, path) {
                    Some(file) => Outcome::File { file, status, rewritten: Some(path.to_owned()) },
                    None => not_found_page(files, "/404.html"),
                }
            }
        };
    }
    match pretty_lookup(files, req.path) {
        Some(file) => Outcome::File { file, status: 200, rewritten: None },
        None => not_found_page(files, "/404.html"),
    }
}
