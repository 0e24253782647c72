//! Phase `route`: a deployment's compiled route table, evaluated in the
//! order of the platform whose files it came from (SPEC §6).
//!
//! Patterns become anchored regexes (the `regex` crate matches in time
//! linear in the input, whatever the pattern) when the manifest is loaded;
//! one `RegexSet` per table finds every candidate rule in a single pass, so
//! a request does not try rules one by one.

use std::borrow::Cow;
use std::collections::HashMap;

use helix_core::routes::{HeaderRule, MatchOn, Matcher, Platform, Redirect, RouteTable};
use regex::{Regex, RegexSet};

use crate::snapshot::{ServedFile, Site};

/// What the route phase decided.
pub(crate) enum Outcome<'s> {
    /// Serve a file with a status (200, or a custom 404/410/…); header
    /// rules match `rewritten` when a rewrite chose the file.
    File {
        file: &'s ServedFile,
        status: u16,
        rewritten: Option<String>,
    },
    Redirect {
        status: u16,
        location: String,
    },
    /// Forward to another origin, adding `headers` to the request.
    Proxy {
        url: String,
        headers: Vec<(String, String)>,
    },
    /// Nothing matched and there is no 404 page.
    NotFound,
    MethodNotAllowed,
}

/// The request facts rules may look at.
pub struct RequestFacts<'r> {
    pub path: &'r str,
    pub method: &'r str,
    /// The request's headers, for `has`/`missing` conditions.
    pub headers: Option<&'r http::HeaderMap>,
    pub query: Option<&'r str>,
    pub host: &'r str,
    pub country: Option<Cow<'r, str>>,
    /// The secret that signs `nf_jwt` tokens, for `Role=` conditions.
    pub jwt_secret: Option<&'r [u8]>,
    pub language: Option<Cow<'r, str>>,
}

pub(crate) struct Router {
    pub platform: Platform,
    redirects: Vec<CompiledRedirect>,
    /// Literal rules by the path they match: one hash lookup.
    exact: HashMap<String, Vec<usize>>,
    /// The other rules' indices, in order, and one set over their patterns.
    dynamic: Vec<usize>,
    redirect_set: PatternSet,
    headers: Vec<(HeaderRule, Regex)>,
    header_set: PatternSet,
    /// Vercel `rewrites`, tried after the filesystem.
    rewrites: Vec<CompiledRedirect>,
    clean_urls: bool,
    trailing_slash: Option<bool>,
    needs_country: bool,
    needs_language: bool,
}

struct CompiledRedirect {
    rule: Redirect,
    regex: Regex,
    /// `has` and `missing` with their value regexes compiled once.
    has: Vec<(Matcher, Option<Regex>)>,
    missing: Vec<(Matcher, Option<Regex>)>,
}

impl CompiledRedirect {
    /// `None` (and a warning) when a pattern does not compile: the
    /// compiler checked them, so this only guards against a manifest from
    /// elsewhere or a set over the regex size limits.
    fn new(rule: &Redirect, source: &str) -> Option<CompiledRedirect> {
        let compiled = Self::compile(rule, source);
        if compiled.is_none() {
            tracing::warn!(file = %rule.origin.file, line = rule.origin.line, "edge cannot compile a routing rule; it is skipped");
        }
        compiled
    }

    fn compile(rule: &Redirect, source: &str) -> Option<CompiledRedirect> {
        let compile = |ms: &[Matcher]| -> Option<Vec<(Matcher, Option<Regex>)>> {
            ms.iter()
                .map(|m| match &m.value {
                    Some(v) => Regex::new(v).ok().map(|re| (m.clone(), Some(re))),
                    None => Some((m.clone(), None)),
                })
                .collect()
        };
        Some(CompiledRedirect {
            regex: Regex::new(source).ok()?,
            has: compile(&rule.has)?,
            missing: compile(&rule.missing)?,
            rule: rule.clone(),
        })
    }

    /// Whether every `has` holds, no `missing` does, and the method is one
    /// the rule takes.
    fn conditions_hold(&self, req: &RequestFacts<'_>) -> bool {
        let methods = &self.rule.methods;
        (methods.is_empty() || methods.iter().any(|m| m == req.method))
            && self.has.iter().all(|(m, re)| matcher_holds(m, re.as_ref(), req))
            && !self.missing.iter().any(|(m, re)| matcher_holds(m, re.as_ref(), req))
    }
}

/// All patterns of a table at once; `None` when the set was too large to
/// build, in which case the rules are tried one by one.
struct PatternSet(Option<RegexSet>);

impl PatternSet {
    fn new(patterns: impl IntoIterator<Item = String>) -> PatternSet {
        let set = regex::RegexSetBuilder::new(patterns).size_limit(64 << 20).dfa_size_limit(16 << 20).build();
        PatternSet(set.ok())
    }

    fn candidates<'a>(&self, subject: &str, each: impl Fn(usize) -> &'a Regex, count: usize) -> Vec<usize> {
        match &self.0 {
            // Most requests match no rule; `is_match` answers that without
            // building the per-pattern match list.
            Some(set) if !set.is_match(subject) => Vec::new(),
            Some(set) => set.matches(subject).into_iter().collect(),
            None => (0..count).filter(|i| each(*i).is_match(subject)).collect(),
        }
    }
}

impl Router {
    pub fn new(table: &RouteTable) -> Router {
        let platform = table.platform;
        let redirects: Vec<CompiledRedirect> = table
            .redirects
            .iter()
            .filter_map(|rule| CompiledRedirect::new(rule, &redirect_regex(platform, &rule.from)))
            .collect();
        let rewrites: Vec<CompiledRedirect> =
            table.rewrites.iter().filter_map(|rule| CompiledRedirect::new(rule, &rule.from)).collect();
        let headers: Vec<(HeaderRule, Regex)> = table
            .headers
            .iter()
            .filter_map(|rule| match Regex::new(&header_regex(platform, &rule.path)) {
                Ok(re) => Some((rule.clone(), re)),
                Err(_) => {
                    let (file, line) = (&rule.origin.file, rule.origin.line);
                    tracing::warn!(%file, line, "edge cannot compile a header rule; it is skipped");
                    None
                }
            })
            .collect();
        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        let mut dynamic = Vec::new();
        for (i, r) in redirects.iter().enumerate() {
            match literal_path(platform, &r.rule.from) {
                Some(path) => exact.entry(path).or_default().push(i),
                None => dynamic.push(i),
            }
        }
        Router {
            platform,
            redirect_set: PatternSet::new(dynamic.iter().map(|i| redirects[*i].regex.as_str().to_owned())),
            exact,
            dynamic,
            rewrites,
            needs_country: table.redirects.iter().any(|r| !r.conditions.country.is_empty()),
            needs_language: table.redirects.iter().any(|r| !r.conditions.language.is_empty()),
            clean_urls: table.clean_urls,
            trailing_slash: table.trailing_slash,
            header_set: PatternSet::new(headers.iter().map(|(_, re)| re.as_str().to_owned())),
            redirects,
            headers,
        }
    }

    /// Decides what a request gets.
    pub fn route<'s>(&self, site: &'s Site, req: &RequestFacts<'_>) -> Outcome<'s> {
        let outcome = match self.platform {
            // helix.toml rules follow Netlify's order; with no rules this is
            // plain static serving with pretty URLs.
            Platform::Helix | Platform::Netlify => self.netlify(site, req),
            Platform::CloudflarePages => self.cloudflare(site, req),
            Platform::Vercel => self.vercel(site, req),
        };
        // Files answer GET and HEAD only; redirects and proxies take any
        // method (a proxied API receives its POSTs).
        match outcome {
            Outcome::File { .. } | Outcome::NotFound if !matches!(req.method, "GET" | "HEAD") => {
                Outcome::MethodNotAllowed
            }
            other => other,
        }
    }

    /// Vercel (SPEC §3.1): cleanUrls and trailingSlash redirects, then
    /// `redirects` (files do not shadow them), the filesystem, `rewrites`,
    /// and `404.html`.
    fn vercel<'s>(&self, site: &'s Site, req: &RequestFacts<'_>) -> Outcome<'s> {
        let path = req.path;
        if let Some(to) = self.vercel_canonical(path) {
            return Outcome::Redirect { status: 308, location: with_query(to, req.query) };
        }
        for (r, caps) in self.matching_redirects(path) {
            if !r.conditions_hold(req) {
                continue;
            }
            let target = substitute_vercel(&r.rule.to, &caps);
            if !(300..400).contains(&r.rule.status) {
                // A legacy route's `dest` before the filesystem: a rewrite
                // that files do not shadow.
                return self.vercel_rewrite(site, req, target, r.rule.status);
            }
            return Outcome::Redirect { status: r.rule.status, location: with_query(target, req.query) };
        }
        if let Some(file) = self.vercel_lookup(site, path) {
            return Outcome::File { file, status: 200, rewritten: None };
        }
        for r in &self.rewrites {
            let Some(c) = r.regex.captures(path) else { continue };
            if !r.conditions_hold(req) {
                continue;
            }
            let target = substitute_vercel(&r.rule.to, &captures(&r.regex, &c));
            return self.vercel_rewrite(site, req, target, r.rule.status);
        }
        not_found_page(site, "/404.html")
    }

    /// A Vercel rewrite: another origin is proxied, a path is looked up.
    fn vercel_rewrite<'s>(&self, site: &'s Site, req: &RequestFacts<'_>, target: String, status: u16) -> Outcome<'s> {
        if is_absolute(&target) {
            return Outcome::Proxy { url: with_query(target, req.query), headers: Vec::new() };
        }
        let target_path = target.split(['?', '#']).next().unwrap_or("/");
        match self.vercel_lookup(site, target_path) {
            Some(file) => Outcome::File { file, status, rewritten: None },
            None => not_found_page(site, "/404.html"),
        }
    }

    /// The 308 target of `cleanUrls` and `trailingSlash`, if the path is
    /// not in its canonical form.
    fn vercel_canonical(&self, path: &str) -> Option<String> {
        let slash = self.trailing_slash == Some(true);
        if self.clean_urls {
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
        match self.trailing_slash {
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
    fn vercel_lookup<'s>(&self, site: &'s Site, path: &str) -> Option<&'s ServedFile> {
        if let Some(f) = site.file(path) {
            return Some(f);
        }
        let dir = path.trim_end_matches('/');
        site.file(&format!("{dir}/index.html"))
            .or_else(|| if self.clean_urls && !dir.is_empty() { site.file(&format!("{dir}.html")) } else { None })
    }

    /// Rules whose pattern matches, in rule order, with their captures.
    fn matching_redirects<'a>(
        &'a self,
        subject: &'a str,
    ) -> impl Iterator<Item = (&'a CompiledRedirect, HashMap<&'a str, &'a str>)> + 'a {
        let mut candidates: Vec<usize> = self.exact.get(subject).cloned().unwrap_or_default();
        let dynamic =
            self.redirect_set.candidates(subject, |k| &self.redirects[self.dynamic[k]].regex, self.dynamic.len());
        candidates.extend(dynamic.into_iter().map(|k| self.dynamic[k]));
        candidates.sort_unstable();
        candidates.into_iter().filter_map(move |i| {
            let r = &self.redirects[i];
            r.regex.captures(subject).map(|c| (r, captures(&r.regex, &c)))
        })
    }

    /// Netlify (SPEC §1.7): first matching rule whose query and conditions
    /// hold; a file at the path wins unless the rule is forced.
    fn netlify<'s>(&self, site: &'s Site, req: &RequestFacts<'_>) -> Outcome<'s> {
        let normalized = trim_trailing_slash(req.path);
        for (r, params) in self.matching_redirects(normalized) {
            let rule = &r.rule;
            let Some(params) = netlify_params(rule, params, req) else { continue };
            if !r.conditions_hold(req) {
                continue;
            }
            if !rule.force && pretty_lookup(site, req.path).is_some() {
                break;
            }
            let target = substitute(&rule.to, &params);
            // A rule that matched on the query consumed it.
            let passthrough = if rule.query.is_empty() { req.query } else { None };
            return match rule.status {
                300..=399 => Outcome::Redirect { status: rule.status, location: with_query(target, passthrough) },
                200 if is_absolute(&target) => {
                    Outcome::Proxy { url: with_query(target, passthrough), headers: rule.proxy_headers.clone() }
                }
                status => {
                    let path = target.split(['?', '#']).next().unwrap_or_default();
                    match pretty_lookup(site, path) {
                        Some(file) => Outcome::File { file, status, rewritten: Some(path.to_owned()) },
                        None => not_found_page(site, "/404.html"),
                    }
                }
            };
        }
        match pretty_lookup(site, req.path) {
            Some(file) => Outcome::File { file, status: 200, rewritten: None },
            None => not_found_page(site, "/404.html"),
        }
    }

    /// Cloudflare Pages (SPEC §2.2, §2.4): redirects always apply; a 200
    /// rule changes the path once; then HTML handling and the nearest 404.
    fn cloudflare<'s>(&self, site: &'s Site, req: &RequestFacts<'_>) -> Outcome<'s> {
        let mut path: Cow<'_, str> = Cow::Borrowed(req.path);
        if let Some((r, params)) = self.matching_redirects(req.path).next() {
            let rule = &r.rule;
            let mut target = substitute(&rule.to, &params);
            if !target.starts_with("https://") {
                target = collapse_slashes(&target);
            } else if let Some(rest) = target.strip_prefix("https://").and_then(|r| r.strip_prefix(req.host))
                && rest.starts_with('/')
            {
                target = rest.to_owned();
            }
            if rule.status != 200 {
                return Outcome::Redirect { status: rule.status, location: with_query(target, req.query) };
            }
            path = Cow::Owned(target.split(['?', '#']).next().unwrap_or("/").to_owned());
        }
        match cloudflare_lookup(site, &path) {
            CfAsset::Serve(file) => Outcome::File { file, status: 200, rewritten: None },
            CfAsset::Redirect(to) => Outcome::Redirect { status: 308, location: with_query(to, req.query) },
            CfAsset::NotFound => {
                let mut dir = path.as_ref();
                loop {
                    dir = match dir.rfind('/') {
                        Some(i) => &dir[..i],
                        None => break,
                    };
                    if let Some(page) = site.file(&format!("{dir}/404.html")) {
                        return Outcome::File { file: page, status: 404, rewritten: None };
                    }
                }
                match site.file("/index.html") {
                    Some(index) => Outcome::File { file: index, status: 200, rewritten: None },
                    None => Outcome::NotFound,
                }
            }
        }
    }

    /// Whether any rule looks at the visitor's country (looking it up may
    /// cost a database search, so it is done only then).
    pub fn needs_country(&self) -> bool {
        self.needs_country
    }

    /// Whether any rule looks at the visitor's language.
    pub fn needs_language(&self) -> bool {
        self.needs_language
    }

    pub fn has_header_rules(&self) -> bool {
        !self.headers.is_empty()
    }

    /// Headers the rules add for `path`, already merged the platform's way:
    /// `(name, Some(value))` to set, `(name, None)` to remove.
    pub fn headers_for(&self, host: &str, path: &str) -> Vec<(String, Option<String>)> {
        let mut out: Vec<(String, Option<String>)> = Vec::new();
        if self.headers.is_empty() {
            return out;
        }
        // Pages rules may name a host; they all match `host + path`.
        let with_host;
        let subject = if self.platform == Platform::CloudflarePages {
            with_host = format!("{host}{path}");
            with_host.as_str()
        } else {
            path
        };
        let matches = self.header_set.candidates(subject, |i| &self.headers[i].1, self.headers.len());
        for i in matches {
            let (rule, re) = &self.headers[i];
            let params: HashMap<&str, &str> = re.captures(subject).map(|c| captures(re, &c)).unwrap_or_default();
            for name in &rule.unset {
                out.retain(|(n, _)| n != name);
                out.push((name.clone(), None));
            }
            for (name, value) in &rule.set {
                let value = if self.platform == Platform::Netlify { value.clone() } else { substitute(value, &params) };
                match out.iter_mut().find(|(n, v)| n == name && v.is_some()) {
                    Some((_, Some(existing))) if self.platform == Platform::CloudflarePages => {
                        existing.push_str(", ");
                        existing.push_str(&value);
                    }
                    Some((_, existing)) => *existing = Some(value),
                    None => {
                        out.retain(|(n, _)| n != name);
                        out.push((name.clone(), Some(value)));
                    }
                }
            }
        }
        out
    }
}

fn not_found_page<'s>(site: &'s Site, page: &str) -> Outcome<'s> {
    match site.file(page) {
        Some(file) => Outcome::File { file, status: 404, rewritten: None },
        None => Outcome::NotFound,
    }
}

/// The exact path, then `path/index.html`, then `path.html` (Netlify's
/// pretty URLs; also HelixStack's own default).
pub(crate) fn pretty_lookup<'s>(site: &'s Site, path: &str) -> Option<&'s ServedFile> {
    if let Some(dir) = path.strip_suffix('/') {
        return site
            .file(&format!("{dir}/index.html"))
            .or_else(|| if dir.is_empty() { None } else { site.file(&format!("{dir}.html")) });
    }
    site.file(path).or_else(|| site.file(&format!("{path}/index.html"))).or_else(|| site.file(&format!("{path}.html")))
}

enum CfAsset<'s> {
    Serve(&'s ServedFile),
    Redirect(String),
    NotFound,
}

/// Pages' default HTML handling, "auto-trailing-slash" (SPEC §2.4).
fn cloudflare_lookup<'s>(site: &'s Site, path: &str) -> CfAsset<'s> {
    if let Some(stem) = path.strip_suffix('/') {
        if let Some(f) = site.file(&format!("{path}index.html")) {
            return CfAsset::Serve(f);
        }
        if let Some(parent) = path.strip_suffix("index/") {
            return CfAsset::Redirect(parent.to_owned());
        }
        if !stem.is_empty() && site.file(&format!("{stem}.html")).is_some() {
            return CfAsset::Redirect(stem.to_owned());
        }
        return CfAsset::NotFound;
    }
    if let Some(stem) = path.strip_suffix(".html")
        && let Some(file) = site.file(path)
    {
        if let Some(dir) = path.strip_suffix("index.html")
            && dir.ends_with('/')
        {
            return CfAsset::Redirect(dir.to_owned());
        }
        if site.file(stem).is_some() || path == "/.html" {
            return CfAsset::Serve(file);
        }
        return CfAsset::Redirect(stem.to_owned());
    }
    if let Some(file) = site.file(path) {
        return CfAsset::Serve(file);
    }
    if let Some(dir) = path.strip_suffix("index")
        && dir.ends_with('/')
    {
        return CfAsset::Redirect(dir.to_owned());
    }
    if let Some(file) = site.file(&format!("{path}.html")) {
        return CfAsset::Serve(file);
    }
    if site.file(&format!("{path}/index.html")).is_some() {
        return CfAsset::Redirect(format!("{path}/"));
    }
    CfAsset::NotFound
}

/// Netlify normalizes `/a/` to `/a` before matching.
fn trim_trailing_slash(path: &str) -> &str {
    if path.len() > 1 { path.strip_suffix('/').unwrap_or(path) } else { path }
}

/// The placeholders a Netlify rule binds, or `None` when its query or
/// conditions do not hold.
fn netlify_params<'a>(
    rule: &'a Redirect,
    mut params: HashMap<&'a str, &'a str>,
    req: &'a RequestFacts<'_>,
) -> Option<HashMap<&'a str, &'a str>> {
    if !rule.query.is_empty() {
        let pairs: Vec<(&str, &str)> = req
            .query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        for (key, want) in &rule.query {
            let (_, got) = pairs.iter().find(|(k, _)| k == key)?;
            match want.strip_prefix(':') {
                Some(var) => {
                    params.insert(var, got);
                }
                None if want == got => {}
                None => return None,
            }
        }
    }
    let c = &rule.conditions;
    if !c.country.is_empty() {
        let country = req.country.as_deref()?.to_ascii_lowercase();
        if !c.country.contains(&country) {
            return None;
        }
    }
    if !c.role.is_empty() {
        let token = crate::respond::cookie(req.headers?, "nf_jwt")?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let roles = crate::roles::roles(token, req.jwt_secret?, now)?;
        if !c.role.iter().any(|r| roles.contains(r)) {
            return None;
        }
    }
    if !c.language.is_empty() {
        let lang = req.language.as_deref()?.to_ascii_lowercase();
        let primary = lang.split('-').next().unwrap_or_default();
        if !c.language.iter().any(|x| *x == lang || *x == primary) {
            return None;
        }
    }
    Some(params)
}

/// Whether one `has`/`missing` condition holds for the request.
fn matcher_holds(m: &Matcher, value_re: Option<&Regex>, req: &RequestFacts<'_>) -> bool {
    let value: Option<&str> = match m.on {
        MatchOn::Host => Some(req.host),
        MatchOn::Header => req.headers.and_then(|h| h.get(m.key.as_str())).and_then(|v| v.to_str().ok()),
        MatchOn::Cookie => req.headers.and_then(|h| crate::respond::cookie(h, &m.key)),
        MatchOn::Query => req
            .query
            .unwrap_or("")
            .split('&')
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .find(|(k, _)| *k == m.key)
            .map(|(_, v)| v),
    };
    match (value, value_re) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(v), Some(re)) => re.is_match(v),
    }
}

/// Vercel destinations: `:name` (with any `*`/`+`/`?` after it) and `$n`.
fn substitute_vercel(template: &str, params: &HashMap<&str, &str>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find([':', '$']) {
        out.push_str(&rest[..i]);
        let sigil = rest.as_bytes()[i];
        let after = &rest[i + 1..];
        let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        // `$1` is the first unnamed group (named `_1` by the compiler);
        // `$name` and `:name` are named ones.
        let numbered = format!("_{name}");
        let value = if sigil == b'$' {
            params.get(numbered.as_str()).or_else(|| params.get(name.as_str()))
        } else {
            params.get(name.as_str())
        };
        match value.filter(|_| !name.is_empty()) {
            Some(value) => {
                out.push_str(value);
                rest = &after[name.len()..];
                if sigil == b':'
                    && let Some(r) = rest.strip_prefix(['*', '+', '?'])
                {
                    rest = r;
                }
            }
            None => {
                out.push(char::from(sigil));
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Named captures: placeholder or `splat` → matched text; an optional
/// group that did not take part is the empty string, as on the platforms.
fn captures<'a>(re: &'a Regex, caps: &regex::Captures<'a>) -> HashMap<&'a str, &'a str> {
    re.capture_names().flatten().map(|name| (name, caps.name(name).map_or("", |m| m.as_str()))).collect()
}

/// Replaces `:name` placeholders (longest names first, so `:id` does not
/// eat into `:idx`).
fn substitute(template: &str, params: &HashMap<&str, &str>) -> String {
    if params.is_empty() || !template.contains(':') {
        return template.to_owned();
    }
    let mut names: Vec<&&str> = params.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let mut out = template.to_owned();
    for name in names {
        out = out.replace(&format!(":{name}"), params[*name]);
    }
    out
}

fn is_absolute(target: &str) -> bool {
    target.starts_with("https://") || target.starts_with("http://")
}

/// Appends the request's query unless the target has one of its own.
fn with_query(target: String, query: Option<&str>) -> String {
    let Some(q) = query.filter(|q| !q.is_empty()) else { return target };
    let (base, fragment) = match target.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (target.as_str(), None),
    };
    if base.contains('?') {
        return target;
    }
    match fragment {
        Some(f) => format!("{base}?{q}#{f}"),
        None => format!("{base}?{q}"),
    }
}

fn collapse_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

/// The one path a rule without placeholders or splats matches, as the
/// platform compares it.
fn literal_path(platform: Platform, from: &str) -> Option<String> {
    if platform == Platform::Vercel {
        return None;
    }
    let dynamic = from.contains('*')
        || from
            .match_indices(':')
            .any(|(i, _)| from[i + 1..].chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_'));
    if dynamic {
        return None;
    }
    Some(match platform {
        Platform::CloudflarePages => from.to_owned(),
        _ => trim_trailing_slash(from).to_owned(),
    })
}

/// The regex for a redirect's `from`.
fn redirect_regex(platform: Platform, from: &str) -> String {
    match platform {
        Platform::CloudflarePages => cloudflare_regex(from),
        Platform::Vercel => from.to_owned(),
        _ => {
            // Netlify: segments; `:name` is one segment; a final `*` takes
            // the rest (and the slash before it is optional).
            let from = trim_trailing_slash(from);
            let mut re = String::from("^");
            let segments: Vec<&str> = from.split('/').filter(|s| !s.is_empty()).collect();
            for (i, seg) in segments.iter().enumerate() {
                if *seg == "*" && i + 1 == segments.len() {
                    re.push_str("(?:/(?P<splat>.*))?");
                } else if let Some(name) = seg.strip_prefix(':').filter(|n| is_name(n)) {
                    re.push_str(&format!("/(?P<{name}>[^/]+)"));
                } else {
                    re.push('/');
                    re.push_str(&regex::escape(seg));
                }
            }
            if segments.is_empty() {
                re.push('/');
            }
            re.push('$');
            re
        }
    }
}

/// Pages' rule engine: `*` is a greedy splat anywhere, `:name` one
/// segment; exact, case-sensitive.
fn cloudflare_regex(pattern: &str) -> String {
    let mut re = String::from("^");
    let mut rest = pattern;
    let mut splat_used = false;
    while let Some(c) = rest.chars().next() {
        if c == '*' && !splat_used {
            re.push_str("(?P<splat>.*)");
            splat_used = true;
            rest = &rest[1..];
        } else if c == ':' {
            let name: String = rest[1..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if is_name(&name) && name != "splat" {
                re.push_str(&format!("(?P<{name}>[^/]+)"));
                rest = &rest[1 + name.len()..];
            } else {
                re.push_str(&regex::escape(":"));
                rest = &rest[1..];
            }
        } else {
            re.push_str(&regex::escape(&c.to_string()));
            rest = &rest[c.len_utf8()..];
        }
    }
    re.push('$');
    re
}

/// The regex for a header rule's path.
fn header_regex(platform: Platform, path: &str) -> String {
    match platform {
        Platform::Vercel => path.to_owned(),
        Platform::CloudflarePages => match path.strip_prefix("https://") {
            Some(url) => {
                let (host, path) = url.split_at(url.find('/').unwrap_or(url.len()));
                let path = if path.is_empty() { "/" } else { path };
                let host_re: String = host
                    .split('.')
                    .map(|label| match label.strip_prefix(':').filter(|n| is_name(n)) {
                        Some(name) => format!("(?P<{name}>[^/.]+)"),
                        None => regex::escape(label),
                    })
                    .collect::<Vec<_>>()
                    .join(r"\.");
                format!("^{host_re}{}", &cloudflare_regex(path)[1..])
            }
            None => format!("^[^/]*{}", &cloudflare_regex(path)[1..]),
        },
        _ => {
            // Netlify `forRegExp`: case-insensitive, optional trailing slash.
            let mut re = String::from("(?i)^");
            for seg in path.split('/').filter(|s| !s.is_empty()) {
                if seg == "*" {
                    re.push_str("/?(.*)");
                } else if seg.strip_prefix(':').is_some_and(is_name) {
                    re.push_str("/([^/]+)");
                } else {
                    re.push('/');
                    re.push_str(&seg.split('*').map(regex::escape).collect::<Vec<_>>().join("(.*)"));
                }
            }
            re.push_str("/?$");
            re
        }
    }
}

fn is_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netlify_patterns() {
        let re = |p: &str| Regex::new(&redirect_regex(Platform::Netlify, p)).unwrap();
        assert!(re("/news/*").is_match("/news/a/b"));
        assert!(re("/news/*").is_match("/news"));
        assert!(!re("/news/*").is_match("/newsy"));
        let caps = re("/blog/:year/:slug").captures("/blog/2024/hello").unwrap();
        assert_eq!(&caps["year"], "2024");
        assert!(re("/").is_match("/"));
        assert!(re("/a.b+c").is_match("/a.b+c"));
        assert!(!re("/a.b+c").is_match("/aXb+c"));
    }

    #[test]
    fn cloudflare_patterns() {
        let re = |p: &str| Regex::new(&cloudflare_regex(p)).unwrap();
        assert!(re("/*.jpg").is_match("/a/b.jpg"));
        assert!(re("/blog/*").is_match("/blog/"));
        assert!(!re("/blog/*").is_match("/blog"));
        assert!(!re("/about").is_match("/about/"));
        assert_eq!(&re("/u/:name/x").captures("/u/bob/x").unwrap()["name"], "bob");
    }

    #[test]
    fn netlify_header_patterns() {
        let re = |p: &str| Regex::new(&header_regex(Platform::Netlify, p)).unwrap();
        assert!(re("/static/*").is_match("/static"));
        assert!(re("/static/*").is_match("/STATIC/x/y"));
        assert!(re("/*/_next/static/chunks/*").is_match("/a/_next/static/chunks/b.js"));
        assert!(re("/").is_match("/"));
    }

    #[test]
    fn queries_and_substitution() {
        assert_eq!(with_query("/b".into(), Some("x=1")), "/b?x=1");
        assert_eq!(with_query("/b?y=2".into(), Some("x=1")), "/b?y=2");
        assert_eq!(with_query("/b#f".into(), Some("x=1")), "/b?x=1#f");
        let params = HashMap::from([("id", "7"), ("idx", "9")]);
        assert_eq!(substitute("/p/:idx/:id", &params), "/p/9/7");
        let params = HashMap::from([("slug", "a/b"), ("_1", "x")]);
        assert_eq!(substitute_vercel("/help/:slug*?q=$1&t=:nope", &params), "/help/a/b?q=x&t=:nope");
        assert_eq!(substitute_vercel("/posts/$slug.html", &params), "/posts/a/b.html");
        assert_eq!(collapse_slashes("/a//b///c"), "/a/b/c");
    }
}
