//! Cloudflare Pages' order (SPEC §2.2, §2.4, §2.6): a request
//! `_routes.json` sends to the Functions app goes there first (and comes
//! back here, without functions, when the app passes it on); the first matching rule
//! always applies (files do not shadow it); a 200 rule changes the path
//! once; then Pages' HTML handling with its 308s, then the nearest
//! `404.html`, else `index.html` (the implicit single-page app).

use std::borrow::Cow;

use super::target::{
    collapse_slashes, confine, on_this_site, one_leading_slash, path_part, render_path, render_url, with_query,
};
use super::{Outcome, RequestFacts, RouteNotes, Router};
use crate::files::{Files, ServedFile};

pub(super) fn route<'s>(
    router: &'s Router,
    files: &'s Files,
    req: &RequestFacts<'_>,
    notes: &mut RouteNotes,
) -> Outcome<'s> {
    if req.functions
        && let Some(chosen) = router.functions.find(helix_core::functions::Shape::Pages, req.path, req.method)
    {
        return Outcome::Function(chosen);
    }
    let mut path: Cow<'_, str> = Cow::Borrowed(req.path);
    if let Some((rule, caps)) = router.redirects.matching(req.path, notes).into_iter().next() {
        if rule.status == 200 {
            let target = collapse_slashes(&render_path(&rule.to, &caps));
            path = Cow::Owned(path_part(&target).to_owned());
            if path.is_empty() {
                path = Cow::Borrowed("/");
            }
        } else {
            let mut target = confine(&rule.to, render_url(&rule.to, &caps));
            if !target.starts_with("https://") {
                target = collapse_slashes(&target);
            } else if let Some(rest) = target.strip_prefix("https://").and_then(|r| r.strip_prefix(req.host))
                && rest.starts_with('/')
            {
                // An absolute URL on this very host is a path (and stays
                // one: captured `//` cannot make it protocol-relative).
                target = one_leading_slash(rest.to_owned());
            }
            return Outcome::Redirect { status: rule.status, location: with_query(target, req.query) };
        }
    }
    match lookup(files, &path) {
        Asset::Serve(file) => Outcome::File { file, status: 200, rewritten: None },
        Asset::Redirect(to) => Outcome::Redirect { status: 308, location: with_query(on_this_site(to), req.query) },
        Asset::NotFound => {
            let mut dir = path.as_ref();
            while let Some(i) = dir.rfind('/') {
                dir = &dir[..i];
                if let Some(page) = files.get(&format!("{dir}/404.html")) {
                    return Outcome::File { file: page, status: 404, rewritten: None };
                }
            }
            match files.get("/index.html") {
                Some(index) => Outcome::File { file: index, status: 200, rewritten: None },
                None => Outcome::NotFound,
            }
        }
    }
}

enum Asset<'s> {
    Serve(&'s ServedFile),
    Redirect(String),
    NotFound,
}

/// Pages' default HTML handling, "auto-trailing-slash" (SPEC §2.4).
fn lookup<'s>(files: &'s Files, path: &str) -> Asset<'s> {
    if let Some(stem) = path.strip_suffix('/') {
        if let Some(f) = files.get(&format!("{path}index.html")) {
            return Asset::Serve(f);
        }
        if let Some(parent) = path.strip_suffix("index/") {
            return Asset::Redirect(parent.to_owned());
        }
        if !stem.is_empty() && files.get(&format!("{stem}.html")).is_some() {
            return Asset::Redirect(stem.to_owned());
        }
        return Asset::NotFound;
    }
    if let Some(stem) = path.strip_suffix(".html")
        && let Some(file) = files.get(path)
    {
        if let Some(dir) = path.strip_suffix("index.html")
            && dir.ends_with('/')
        {
            return Asset::Redirect(dir.to_owned());
        }
        if files.get(stem).is_some() || path == "/.html" {
            return Asset::Serve(file);
        }
        return Asset::Redirect(stem.to_owned());
    }
    if let Some(file) = files.get(path) {
        return Asset::Serve(file);
    }
    if let Some(dir) = path.strip_suffix("index")
        && dir.ends_with('/')
    {
        return Asset::Redirect(dir.to_owned());
    }
    if let Some(file) = files.get(&format!("{path}.html")) {
        return Asset::Serve(file);
    }
    if files.get(&format!("{path}/index.html")).is_some() {
        return Asset::Redirect(format!("{path}/"));
    }
    Asset::NotFound
}
