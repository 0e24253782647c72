//! Function sources → the deployment's functions (SPEC §1.8, §2.5–2.6,
//! §3.8): which files are functions, their names, URL patterns, methods
//! and schedules, each platform's way. Pure: the sources come in as text.
//!
//! Netlify's `config` export is read statically (Netlify requires a
//! literal), so is which `onRequest*` handlers a Pages file exports.

use std::collections::BTreeMap;

use helix_core::cron::{Dialect, Schedule};
use helix_core::functions::{Cron, FnRoute, Function, PagesRoute, Runtime, Shape};
use helix_core::routes::{Diagnostic, DiagnosticKind};

/// Where each platform keeps functions, relative to the project root.
pub const NETLIFY_DIR: &str = "netlify/functions";
pub const NETLIFY_EDGE_DIR: &str = "netlify/edge-functions";
pub const VERCEL_DIR: &str = "api";
pub const PAGES_DIR: &str = "functions";

/// Where functions may be, relative to the project root, whatever the
/// platform: every platform's directory (Netlify's own `[functions]
/// directory` when set). Builds and `helix deploy` collect these, and
/// never serve them.
pub fn source_dirs(netlify_dir: Option<&str>) -> Vec<String> {
    let netlify = netlify_dir.map_or(NETLIFY_DIR, |d| d.trim_start_matches("./").trim_matches('/'));
    let mut dirs = vec![netlify.to_owned()];
    for d in [NETLIFY_EDGE_DIR, VERCEL_DIR, PAGES_DIR] {
        if !dirs.iter().any(|x| x == d) {
            dirs.push(d.to_owned());
        }
    }
    dirs
}

/// Module extensions a function entry may have, in Netlify's precedence.
const EXTENSIONS: &[&str] = &["js", "mjs", "cjs", "ts", "tsx", "mts", "cts", "jsx"];

/// What the functions compile reads.
#[derive(Default)]
pub struct FunctionSources<'a> {
    /// Path relative to the project root → source text.
    pub files: BTreeMap<&'a str, &'a str>,
    /// Netlify's `[functions] directory`, if set.
    pub netlify_dir: Option<String>,
    /// The publish directory's `_routes.json`, if any.
    pub routes_json: Option<&'a str>,
    /// `[functions] runtime` of `helix.toml`.
    pub runtime: Option<Runtime>,
    /// `netlify.toml [functions."name"] schedule`.
    pub schedules: BTreeMap<String, String>,
    /// `netlify.toml [[edge_functions]]`: (path, function), in order.
    pub edge_declarations: Vec<(String, String)>,
    /// `vercel.json`, for its `crons`.
    pub vercel_json: Option<String>,
    /// What functions see besides the platform's variables: the build
    /// environment of `netlify.toml`/`helix.toml`, then `netlify.toml
    /// [context.<context>.environment]` (and the branch's), then
    /// `helix.toml [functions.environment]`.
    pub environment: BTreeMap<String, String>,
}

impl FunctionSources<'_> {
    /// Adds what the project's root config files say about functions,
    /// for a deployment in Netlify's deploy `context` (`production`,
    /// `deploy-preview`, `branch-deploy`) of `branch`.
    pub fn with_config(mut self, root: &BTreeMap<String, Vec<u8>>, context: &str, branch: Option<&str>) -> Self {
        let text = |name: &str| root.get(name).map(|b| String::from_utf8_lossy(b).into_owned());
        let build = crate::build_settings(root).ok().flatten();
        self.netlify_dir = build.as_ref().and_then(|b| b.functions.clone());
        self.environment = build.map(|b| b.environment).unwrap_or_default();
        if let Some(t) = text("netlify.toml") {
            self.edge_declarations = crate::netlify::edge_function_declarations(&t);
            self.schedules = crate::netlify::function_schedules(&t);
            self.environment.extend(crate::netlify::context_environment(&t, context, branch));
        }
        if let Some(t) = text("helix.toml") {
            self.runtime = crate::helix::functions_runtime(&t);
            self.environment.extend(crate::helix::functions_environment(&t));
        }
        self.vercel_json = text("vercel.json");
        self
    }
}

/// Compiles the functions; an error names the file and the problem.
pub fn compile(src: &FunctionSources<'_>) -> Result<Vec<Function>, String> {
    let runtime = src.runtime.unwrap_or_default();
    let mut out = netlify_edge(src, runtime)?;
    out.extend(netlify(src, runtime)?);
    out.extend(vercel(src, runtime)?);
    if let Some(app) = pages(src, runtime)? {
        out.push(app);
    }
    Ok(out)
}

/// Whether `path` is a JavaScript or TypeScript module (the files whose
/// text the compile reads).
pub fn is_module(path: &str) -> bool {
    extension(path).is_some()
}

fn extension(path: &str) -> Option<(&str, &str)> {
    let (stem, ext) = path.rsplit_once('.')?;
    EXTENSIONS.contains(&ext).then_some((stem, ext))
}

fn rank(ext: &str) -> usize {
    EXTENSIONS.iter().position(|e| *e == ext).unwrap_or(usize::MAX)
}

// --- Netlify -------------------------------------------------------------

/// Netlify's function entries under `dir`: name → path (a top-level
/// file, or a directory's `index.*` or `<dirname>.*`; a directory beats a
/// file, `.js` beats `.ts`).
fn netlify_entries<'a>(src: &FunctionSources<'a>, dir: &str) -> BTreeMap<String, &'a str> {
    let prefix = format!("{dir}/");
    // name → (is a directory entry, extension rank, path)
    let mut entries: BTreeMap<String, (bool, usize, &str)> = BTreeMap::new();
    for path in src.files.keys() {
        let Some(rest) = path.strip_prefix(&prefix) else { continue };
        if rest.split('/').any(|s| s == "node_modules") {
            continue;
        }
        let candidate = match rest.split_once('/') {
            None => extension(rest).map(|(stem, ext)| (stem.to_owned(), false, rank(ext))),
            Some((dirname, file)) if !file.contains('/') => extension(file)
                .filter(|(stem, _)| *stem == "index" || *stem == dirname)
                .map(|(_, ext)| (dirname.to_owned(), true, rank(ext))),
            _ => None,
        };
        let Some((name, is_dir, r)) = candidate else { continue };
        let better = match entries.get(&name) {
            None => true,
            Some((d, er, _)) => (is_dir && !d) || (is_dir == *d && r < *er),
        };
        if better {
            entries.insert(name, (is_dir, r, path));
        }
    }
    entries.into_iter().map(|(name, (_, _, path))| (name, path)).collect()
}

/// Edge functions run in declaration order: `[[edge_functions]]` first,
/// then inline `config.path`s by name.
fn netlify_edge(src: &FunctionSources<'_>, runtime: Runtime) -> Result<Vec<Function>, String> {
    let entries = netlify_entries(src, NETLIFY_EDGE_DIR);
    let mut out = Vec::new();
    for (path, name) in &src.edge_declarations {
        let Some(entry) = entries.get(name) else {
            return Err(format!("netlify.toml: [[edge_functions]] names {name:?}, which is not in {NETLIFY_EDGE_DIR}"));
        };
        let mut f = function(&format!("edge:{name}:{}", out.len()), Shape::NetlifyEdge, entry, runtime);
        f.routes = vec![url_pattern(path).map_err(|e| format!("netlify.toml: {e}"))?];
        out.push(f);
    }
    for (name, path) in &entries {
        let config = netlify_config(src.files[path]).map_err(|e| format!("{path}: `export const config`: {e}"))?;
        if config.paths.is_empty() {
            continue;
        }
        let mut f = function(&format!("edge:{name}"), Shape::NetlifyEdge, path, runtime);
        f.methods = config.methods;
        f.routes = url_patterns(&config.paths, path)?;
        f.excluded = url_patterns(&config.excluded, path)?;
        out.push(f);
    }
    Ok(out)
}

/// `config.path`/`excludedPath` values of the file at `path`.
fn url_patterns(paths: &[String], path: &str) -> Result<Vec<FnRoute>, String> {
    paths.iter().map(|p| url_pattern(p)).collect::<Result<_, _>>().map_err(|e| format!("{path}: {e}"))
}

fn netlify(src: &FunctionSources<'_>, runtime: Runtime) -> Result<Vec<Function>, String> {
    let dir = src.netlify_dir.as_deref().map_or(NETLIFY_DIR, |d| d.trim_start_matches("./").trim_matches('/'));
    let mut out = Vec::new();
    for (name, path) in netlify_entries(src, dir) {
        let text = src.files[path];
        let config = netlify_config(text).map_err(|e| format!("{path}: `export const config`: {e}"))?;
        let mut f = function(&name, Shape::Netlify, path, runtime);
        f.background = name.ends_with("-background") || config.background;
        f.prefer_static = config.prefer_static;
        f.methods = config.methods;
        f.schedule = config.schedule.or_else(|| src.schedules.get(&name).cloned());
        if f.schedule.is_some() && !config.paths.is_empty() {
            return Err(format!("{path}: a scheduled function cannot have a `path`"));
        }
        f.routes = if config.paths.is_empty() {
            // The default URL, also with anything after it.
            vec![FnRoute {
                regex: format!("^/\\.netlify/functions/{}(?:/.*)?$", escape(&name)),
                params: Vec::new(),
                loose: false,
            }]
        } else {
            url_patterns(&config.paths, path)?
        };
        f.excluded = url_patterns(&config.excluded, path)?;
        out.push(f);
    }
    Ok(out)
}

#[derive(Default)]
struct NetlifyConfig {
    paths: Vec<String>,
    excluded: Vec<String>,
    methods: Vec<String>,
    prefer_static: bool,
    background: bool,
    schedule: Option<String>,
}

fn netlify_config(text: &str) -> Result<NetlifyConfig, String> {
    let Some(literal) = exported_object(text, "config") else { return Ok(NetlifyConfig::default()) };
    let value: serde_json::Value =
        serde_json::from_str(&js_to_json(literal)?).map_err(|e| format!("not a literal object: {e}"))?;
    let strings = |key: &str| -> Result<Vec<String>, String> {
        match value.get(key) {
            None => Ok(Vec::new()),
            Some(serde_json::Value::String(s)) => Ok(vec![s.clone()]),
            Some(serde_json::Value::Array(a)) => {
                a.iter().map(|v| v.as_str().map(str::to_owned).ok_or(format!("`{key}` must be strings"))).collect()
            }
            Some(_) => Err(format!("`{key}` must be a string or a list of strings")),
        }
    };
    let paths = strings("path")?;
    let excluded = strings("excludedPath")?;
    for p in paths.iter().chain(&excluded) {
        if !p.starts_with('/') {
            return Err(format!("path {p:?} must start with /"));
        }
    }
    let methods: Vec<String> = strings("method")?.iter().map(|m| m.to_ascii_uppercase()).collect();
    if let Some(m) =
        methods.iter().find(|m| !["GET", "POST", "PUT", "PATCH", "OPTIONS", "DELETE", "HEAD"].contains(&m.as_str()))
    {
        return Err(format!("unknown method {m:?}"));
    }
    let flag = |key: &str| value.get(key).and_then(serde_json::Value::as_bool).unwrap_or(false);
    let schedule = value.get("schedule").and_then(serde_json::Value::as_str).map(str::to_owned);
    Ok(NetlifyConfig {
        paths,
        excluded,
        methods,
        prefer_static: flag("preferStatic"),
        background: flag("background"),
        schedule,
    })
}

/// A Netlify path: a literal compares exactly (without case, one trailing
/// slash ignored); otherwise URLPattern's `:name` and `*`.
fn url_pattern(p: &str) -> Result<FnRoute, String> {
    if !p.contains(['*', ':', '{', '[', '(']) {
        let literal = p.trim_end_matches('/').to_ascii_lowercase();
        let literal = if literal.is_empty() { "/".to_owned() } else { literal };
        return Ok(FnRoute { regex: format!("^{}$", escape(&literal)), params: Vec::new(), loose: true });
    }
    if p.contains(['{', '[', '(']) {
        return Err(format!("path {p:?}: groups and character classes are not supported; use :name and *"));
    }
    let (mut regex, mut params) = (String::from("^"), Vec::new());
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix(':') {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            if end == 0 {
                return Err(format!("path {p:?}: `:` without a name"));
            }
            params.push(after[..end].to_owned());
            regex.push_str("([^/]+)");
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('*') {
            params.push(params.len().to_string());
            regex.push_str("(.*)");
            rest = after;
        } else {
            let end = rest.find([':', '*']).unwrap_or(rest.len());
            regex.push_str(&escape(&rest[..end]));
            rest = &rest[end..];
        }
    }
    regex.push_str("/?$");
    Ok(FnRoute { regex, params, loose: false })
}

// --- Vercel ------------------------------------------------------------

fn vercel(src: &FunctionSources<'_>, runtime: Runtime) -> Result<Vec<Function>, String> {
    let prefix = format!("{VERCEL_DIR}/");
    let mut by_route: BTreeMap<String, (usize, &str)> = BTreeMap::new();
    for path in src.files.keys() {
        let Some(rest) = path.strip_prefix(&prefix) else { continue };
        // Helpers: anything under `_` or `.`, and dependencies.
        if rest.split('/').any(|s| s.starts_with(['_', '.']) || s == "node_modules") {
            continue;
        }
        let Some((stem, ext)) = extension(rest) else { continue };
        let better = by_route.get(stem).is_none_or(|(r, _)| rank(ext) < *r);
        if better {
            by_route.insert(stem.to_owned(), (rank(ext), path));
        }
    }
    let mut out = Vec::new();
    for (stem, (_, path)) in by_route {
        let ext = path.rsplit_once('.').map_or("js", |(_, e)| e);
        let mut segments: Vec<&str> = stem.split('/').collect();
        let index = segments.last() == Some(&"index");
        if index {
            segments.pop();
        }
        let (mut regex, mut params) = (String::from("^/api"), Vec::new());
        for seg in &segments {
            match seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                Some(name) => {
                    params.push(name.to_owned());
                    regex.push_str("/([^/]+)");
                }
                None => {
                    regex.push('/');
                    regex.push_str(&escape(seg));
                }
            }
        }
        // `/api/x` and `/api/x.js`; an index also as `/api/dir/index`.
        let tail =
            if index { format!("(?:/index(?:\\.{})?)?/?$", escape(ext)) } else { format!("(?:\\.{})?$", escape(ext)) };
        regex.push_str(&tail);
        let mut f = function(&format!("api/{stem}"), Shape::Vercel, path, runtime);
        f.routes = vec![FnRoute { regex, params, loose: false }];
        apply_vercel_settings(&mut f, src.vercel_json.as_deref())?;
        if out.iter().any(|o: &Function| o.routes == f.routes) {
            return Err(format!("{path}: another function under api/ has the same route"));
        }
        out.push(f);
    }
    Ok(out)
}

/// `vercel.json` `functions`: glob → `{ maxDuration, memory, runtime }`
/// for the files it matches (the last matching glob wins per setting).
fn apply_vercel_settings(f: &mut Function, vercel_json: Option<&str>) -> Result<(), String> {
    let Some(json) = vercel_json.and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()) else { return Ok(()) };
    let Some(map) = json.get("functions").and_then(|v| v.as_object()) else { return Ok(()) };
    for (glob, settings) in map {
        if !glob_regex(glob).is_ok_and(|re| re.is_match(&f.entry)) {
            continue;
        }
        let at = |what: &str| format!("vercel.json functions {glob:?}: {what}");
        if let Some(v) = settings.get("maxDuration") {
            let secs = v.as_u64().filter(|s| (1..=helix_core::functions::MAX_DURATION_MS / 1000).contains(s));
            f.max_duration_ms = Some(secs.ok_or_else(|| at("maxDuration must be 1 to 900 seconds"))? * 1000);
        }
        if let Some(v) = settings.get("memory") {
            let mib = v.as_u64().filter(|m| (128..=10_240).contains(m));
            f.memory_mib = Some(mib.ok_or_else(|| at("memory must be 128 to 10240 MB"))?);
        }
        if let Some(r) = settings.get("runtime").and_then(|r| r.as_str()) {
            // `@vercel/node@3`-style community runtimes mean node here.
            f.runtime = Runtime::parse(r.trim_start_matches("@vercel/").split('@').next().unwrap_or(r))
                .unwrap_or(Runtime::Node);
        }
    }
    Ok(())
}

/// A Vercel `functions` glob (`api/**/*.js`, `api/hello.ts`) as a regex.
fn glob_regex(glob: &str) -> Result<regex::Regex, regex::Error> {
    let mut re = String::from("^");
    let mut chars = glob.trim_start_matches("./").chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                if chars.peek() == Some(&'/') {
                    chars.next();
                    re.push_str("(?:.*/)?");
                } else {
                    re.push_str(".*");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re)
}

// --- Cloudflare Pages --------------------------------------------------

fn pages(src: &FunctionSources<'_>, runtime: Runtime) -> Result<Option<Function>, String> {
    let prefix = format!("{PAGES_DIR}/");
    let mut routes: Vec<(Vec<Seg>, PagesRoute)> = Vec::new();
    let mut files: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    for path in src.files.keys() {
        let Some(rest) = path.strip_prefix(&prefix) else { continue };
        if rest.split('/').any(|s| s == "node_modules") {
            continue;
        }
        let Some((stem, ext)) = extension(rest) else { continue };
        if !["js", "mjs", "ts", "tsx", "jsx"].contains(&ext) {
            continue;
        }
        if files.get(stem).is_none_or(|(r, _)| rank(ext) < *r) {
            files.insert(stem, (rank(ext), path));
        }
    }
    // `foo.js` and `foo/index.js` are both `/foo`: the index wins.
    let mut seen: BTreeMap<String, (bool, &str)> = BTreeMap::new();
    for (stem, (_, path)) in &files {
        let mut parts: Vec<&str> = stem.split('/').collect();
        let last = parts.pop().unwrap_or_default();
        let middleware = last == "_middleware" || last == "_middleware_";
        let index = last == "index";
        if !middleware && !index {
            parts.push(last);
        }
        let mut segs = Vec::new();
        for p in &parts {
            segs.push(Seg::parse(p).map_err(|e| format!("{path}: {e}"))?);
        }
        let key = format!("{}{}", if middleware { "m:" } else { "r:" }, parts.join("/"));
        if let Some((was_index, other)) = seen.get(&key).copied() {
            if was_index || !index {
                continue;
            }
            routes.retain(|(_, r)| r.file != other);
        }
        seen.insert(key, (index, path));
        let pattern = pages_pattern(&segs, middleware);
        let catchall: Vec<String> =
            segs.iter().filter_map(|s| if let Seg::Rest(n) = s { Some(n.clone()) } else { None }).collect();
        let exports = handler_exports(src.files[path]);
        if exports.is_empty() {
            continue;
        }
        for method in exports {
            routes.push((
                segs.clone(),
                PagesRoute {
                    pattern: pattern.clone(),
                    method,
                    file: (*path).to_owned(),
                    middleware,
                    catchall: catchall.clone(),
                },
            ));
        }
    }
    if routes.is_empty() {
        return Ok(None);
    }
    // Precedence: more segments first; at the first difference static,
    // then a parameter, then a catch-all; a method before `onRequest`;
    // then by path. Middleware runs outer first.
    routes.sort_by(|(a, ra), (b, rb)| {
        if ra.middleware || rb.middleware {
            return rb.middleware.cmp(&ra.middleware).then(a.len().cmp(&b.len())).then(ra.file.cmp(&rb.file));
        }
        b.len()
            .cmp(&a.len())
            .then_with(|| a.iter().map(Seg::order).cmp(b.iter().map(Seg::order)))
            .then(ra.method.is_none().cmp(&rb.method.is_none()))
            .then(ra.file.cmp(&rb.file))
    });
    let (include, exclude) = match src.routes_json {
        Some(text) => {
            let mut diags = Vec::new();
            crate::cloudflare::routes_json(text, &mut diags).ok_or_else(|| {
                diags.first().map_or("_routes.json is invalid".into(), |d| format!("_routes.json: {}", d.message))
            })?
        }
        None => (auto_include(&routes), Vec::new()),
    };
    let mut app = function("pages", Shape::Pages, &routes[0].1.file, runtime);
    app.routes = include.iter().map(|r| routes_rule(r)).collect();
    app.excluded = exclude.iter().map(|r| routes_rule(r)).collect();
    app.pages_routes = routes.into_iter().map(|(_, r)| r).collect();
    Ok(Some(app))
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Static(String),
    Param(String),
    Rest(String),
}

impl Seg {
    fn parse(s: &str) -> Result<Seg, String> {
        let name_ok = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if let Some(n) = s.strip_prefix("[[").and_then(|s| s.strip_suffix("]]")) {
            return if name_ok(n) { Ok(Seg::Rest(n.into())) } else { Err(format!("invalid parameter name {n:?}")) };
        }
        if let Some(n) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            return if name_ok(n) { Ok(Seg::Param(n.into())) } else { Err(format!("invalid parameter name {n:?}")) };
        }
        Ok(Seg::Static(s.into()))
    }

    fn order(&self) -> u8 {
        match self {
            Seg::Static(_) => 0,
            Seg::Param(_) => 1,
            Seg::Rest(_) => 2,
        }
    }
}

/// A JavaScript regex (named groups) for a Pages route, trailing slash
/// optional; middleware matches everything under its directory.
fn pages_pattern(segs: &[Seg], middleware: bool) -> String {
    let mut re = String::from("^");
    for s in segs {
        match s {
            Seg::Static(t) => {
                re.push('/');
                re.push_str(&escape(t));
            }
            Seg::Param(n) => re.push_str(&format!("/(?<{n}>[^/]+)")),
            Seg::Rest(n) => re.push_str(&format!("(?:/(?<{n}>.*))?")),
        }
    }
    if middleware {
        re.push_str("(?:/.*)?$");
    } else {
        re.push_str("/?$");
    }
    re
}

/// `onRequest`, `onRequestGet`, … a file exports: `None` for all methods.
fn handler_exports(text: &str) -> Vec<Option<String>> {
    let re = regex::Regex::new(
        r"export\s+(?:async\s+)?(?:function\s*\*?\s*|const\s+|let\s+|var\s+)(onRequest(?:Get|Post|Put|Patch|Delete|Options|Head)?)\b|export\s*\{([^}]*)\}",
    )
    .expect("valid");
    let mut names = Vec::new();
    for c in re.captures_iter(text) {
        if let Some(n) = c.get(1) {
            names.push(n.as_str().to_owned());
        } else if let Some(list) = c.get(2) {
            for item in list.as_str().split(',') {
                let exported = item.rsplit(" as ").next().unwrap_or(item).trim();
                if exported.starts_with("onRequest") {
                    names.push(exported.to_owned());
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|n| match n.strip_prefix("onRequest")? {
            "" => Some(None),
            m if ["Get", "Post", "Put", "Patch", "Delete", "Options", "Head"].contains(&m) => {
                Some(Some(m.to_ascii_uppercase()))
            }
            _ => None,
        })
        .collect()
}

/// `_routes.json` when there is none: each route up to its first
/// parameter, then `*`; middleware everywhere below its directory.
fn auto_include(routes: &[(Vec<Seg>, PagesRoute)]) -> Vec<String> {
    let mut rules: Vec<String> = Vec::new();
    for (segs, r) in routes {
        let mut rule = String::new();
        let mut wild = r.middleware;
        for s in segs {
            match s {
                Seg::Static(t) => {
                    rule.push('/');
                    rule.push_str(t);
                }
                _ => {
                    wild = true;
                    break;
                }
            }
        }
        let rule = if wild {
            format!("{rule}/*")
        } else if rule.is_empty() {
            "/".into()
        } else {
            rule
        };
        if !rules.contains(&rule) {
            rules.push(rule);
        }
    }
    // A rule under another's `/*` is redundant.
    let wild: Vec<String> = rules.iter().filter_map(|r| r.strip_suffix("/*").map(str::to_owned)).collect();
    rules.retain(|r| {
        !wild.iter().any(|w| r != &format!("{w}/*") && (r == w || r.starts_with(&format!("{w}/")) || w.is_empty()))
    });
    if rules.len() > 100 { vec!["/*".into()] } else { rules }
}

/// One `_routes.json` rule: `*` is anything (`/` too); `/foo/*` also
/// matches `/foo`; a trailing slash is optional; `/` is only `/`.
fn routes_rule(rule: &str) -> FnRoute {
    let regex = if rule == "/" {
        "^/$".to_owned()
    } else if let Some(base) = rule.strip_suffix("/*") {
        format!("^{}(?:/.*)?$", star(base))
    } else {
        format!("^{}/?$", star(rule.trim_end_matches('/')))
    };
    FnRoute { regex, params: Vec::new(), loose: false }
}

fn star(s: &str) -> String {
    s.split('*').map(escape).collect::<Vec<_>>().join(".*")
}

// --- schedules -----------------------------------------------------------

/// Every schedule: Netlify scheduled functions and `vercel.json` `crons`,
/// each checked as its platform checks it (a bad one is rejected: the
/// deploy fails).
pub fn crons(src: &FunctionSources<'_>, functions: &[Function]) -> (Vec<Cron>, Vec<Diagnostic>) {
    let (mut out, mut diags) = (Vec::new(), Vec::new());
    let mut reject = |file: &str, message: String| {
        diags.push(Diagnostic { file: file.to_owned(), line: 0, kind: DiagnosticKind::Rejected, message })
    };
    for f in functions {
        let Some(schedule) = &f.schedule else { continue };
        match Schedule::parse(schedule, Dialect::Netlify) {
            Ok(_) => out.push(Cron { schedule: schedule.clone(), path: None, function: Some(f.name.clone()) }),
            Err(e) => reject(&f.entry, format!("schedule of {}: {e}", f.name)),
        }
    }
    let json = src.vercel_json.as_deref().and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok());
    let list = json.as_ref().and_then(|v| v.get("crons")).and_then(|c| c.as_array()).cloned().unwrap_or_default();
    for item in list {
        let path = item.get("path").and_then(|p| p.as_str()).unwrap_or_default();
        let schedule = item.get("schedule").and_then(|p| p.as_str()).unwrap_or_default();
        if !path.starts_with('/') {
            reject("vercel.json", format!("crons: Path must start with / ({path:?})"));
            continue;
        }
        if path.len() > 512 {
            reject("vercel.json", "crons: a path is at most 512 characters".into());
            continue;
        }
        match Schedule::parse(schedule, Dialect::Vercel) {
            Ok(_) => out.push(Cron { schedule: schedule.to_owned(), path: Some(path.to_owned()), function: None }),
            Err(e) => reject("vercel.json", format!("crons: {path}: {e}")),
        }
    }
    (out, diags)
}

// --- shared ------------------------------------------------------------

fn function(name: &str, shape: Shape, entry: &str, runtime: Runtime) -> Function {
    Function {
        name: name.to_owned(),
        shape,
        entry: entry.to_owned(),
        runtime,
        routes: Vec::new(),
        excluded: Vec::new(),
        methods: Vec::new(),
        prefer_static: false,
        background: false,
        schedule: None,
        max_duration_ms: None,
        memory_mib: None,
        pages_routes: Vec::new(),
    }
}

/// Escapes what is special in a regex, in the syntax both Rust's `regex`
/// and JavaScript accept.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The object literal of `export const <name> = {…}`.
fn exported_object<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    let re = regex::Regex::new(&format!(r"export\s+const\s+{name}\s*(?::\s*[A-Za-z_.]+\s*)?=\s*\{{")).ok()?;
    let start = re.find(text)?.end() - 1;
    let (mut depth, mut quote) = (0usize, None::<char>);
    let mut escaped = false;
    for (i, c) in text[start..].char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' | '`' => quote = Some(c),
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(&text[start..=start + i]);
                    }
                }
                _ => {}
            },
        }
    }
    None
}

/// A JavaScript object literal of plain values as JSON: keys quoted,
/// single-quoted strings double-quoted, trailing commas dropped.
fn js_to_json(js: &str) -> Result<String, String> {
    let mut out = String::with_capacity(js.len() + 16);
    let chars: Vec<char> = js.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                let q = c;
                out.push('"');
                i += 1;
                while i < chars.len() && chars[i] != q {
                    match chars[i] {
                        '\\' if i + 1 < chars.len() => {
                            out.push('\\');
                            out.push(chars[i + 1]);
                            i += 1;
                        }
                        '"' => out.push_str("\\\""),
                        '$' if q == '`' && chars.get(i + 1) == Some(&'{') => {
                            return Err("template substitutions are not literals".into());
                        }
                        ch => out.push(ch),
                    }
                    i += 1;
                }
                out.push('"');
            }
            ',' => {
                let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
                if !matches!(next, Some('}') | Some(']')) {
                    out.push(',');
                }
            }
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == '$' => {
                let start = i;
                while i + 1 < chars.len()
                    && (chars[i + 1].is_ascii_alphanumeric() || chars[i + 1] == '_' || chars[i + 1] == '$')
                {
                    i += 1;
                }
                let word: String = chars[start..=i].iter().collect();
                let after = chars[i + 1..].iter().find(|c| !c.is_whitespace());
                if after == Some(&':') {
                    out.push('"');
                    out.push_str(&word);
                    out.push('"');
                } else if ["true", "false", "null"].contains(&word.as_str()) {
                    out.push_str(&word);
                } else {
                    return Err(format!("`{word}` is not a literal"));
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile_files(files: &[(&str, &str)]) -> Result<Vec<Function>, String> {
        let src = FunctionSources { files: files.iter().copied().collect(), ..Default::default() };
        compile(&src)
    }

    fn matches(route: &FnRoute, path: &str) -> Option<Vec<String>> {
        let re = regex::Regex::new(&route.regex).unwrap();
        let subject = if route.loose { path.trim_end_matches('/').to_ascii_lowercase() } else { path.to_owned() };
        re.captures(&subject)
            .map(|c| c.iter().skip(1).map(|m| m.map_or(String::new(), |m| m.as_str().to_owned())).collect())
    }

    #[test]
    fn netlify_names_entries_and_paths() {
        let fns = compile_files(&[
            ("netlify/functions/hello.js", "exports.handler = async () => ({ statusCode: 200 })"),
            ("netlify/functions/hello.ts", "export default () => new Response('ts')"),
            ("netlify/functions/dir/index.mjs", "export default () => {}"),
            ("netlify/functions/dir/helper.mjs", "export const x = 1"),
            (
                "netlify/functions/travel.mjs",
                "export default 1\nexport const config = { path: '/travel/:city/:country', method: ['get'], };",
            ),
            ("netlify/functions/sync-background.js", "exports.handler = () => {}"),
            ("netlify/functions/node_modules/x/index.js", ""),
        ])
        .unwrap();
        let names: Vec<&str> = fns.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["dir", "hello", "sync-background", "travel"]);
        assert_eq!(fns[1].entry, "netlify/functions/hello.js", ".js beats .ts");
        assert!(matches(&fns[1].routes[0], "/.netlify/functions/hello/extra").is_some());
        assert!(matches(&fns[1].routes[0], "/.netlify/functions/hellox").is_none());
        assert!(fns[2].background);
        assert_eq!(fns[3].methods, ["GET"]);
        assert_eq!(fns[3].routes[0].params, ["city", "country"]);
        assert_eq!(matches(&fns[3].routes[0], "/travel/paris/france").unwrap(), ["paris", "france"]);
        assert!(matches(&fns[3].routes[0], "/.netlify/functions/travel").is_none(), "a path replaces the default URL");
    }

    #[test]
    fn netlify_literal_paths_ignore_case_and_one_trailing_slash() {
        let fns =
            compile_files(&[("netlify/functions/a.mjs", "export const config = { path: \"/About/Us\" }")]).unwrap();
        assert!(matches(&fns[0].routes[0], "/about/us/").is_some());
        assert!(compile_files(&[("netlify/functions/a.mjs", "export const config = { path: SOME_VAR }")]).is_err());
        assert!(compile_files(&[("netlify/functions/a.mjs", "export const config = { path: 'no-slash' }")]).is_err());
    }

    #[test]
    fn vercel_files_and_dynamic_segments() {
        let fns = compile_files(&[
            ("api/hello.js", ""),
            ("api/users/[id].ts", ""),
            ("api/index.js", ""),
            ("api/_lib/db.js", ""),
            ("api/[...slug].js", ""),
        ])
        .unwrap();
        let names: Vec<&str> = fns.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["api/[...slug]", "api/hello", "api/index", "api/users/[id]"]);
        assert!(matches(&fns[1].routes[0], "/api/hello").is_some());
        assert!(matches(&fns[1].routes[0], "/api/hello.js").is_some());
        assert_eq!(matches(&fns[3].routes[0], "/api/users/42").unwrap(), ["42"]);
        assert!(matches(&fns[2].routes[0], "/api").is_some() && matches(&fns[2].routes[0], "/api/").is_some());
        assert_eq!(fns[0].routes[0].params, ["...slug"]);
        assert!(matches(&fns[0].routes[0], "/api/a/b").is_none(), "[...slug] is one segment outside Next.js");
    }

    #[test]
    fn pages_routes_in_precedence_order_with_middleware_first() {
        let fns = compile_files(&[
            ("functions/index.js", "export function onRequest() {}"),
            ("functions/[id].js", "export const onRequestGet = () => {}"),
            ("functions/fruits/apple.js", "export async function onRequest() {}"),
            ("functions/fruits/[[rest]].js", "export { onRequest }"),
            ("functions/_middleware.js", "export const onRequest = [a, b]"),
            ("functions/lib.js", "export const helper = 1"),
        ])
        .unwrap();
        let app = &fns[0];
        let order: Vec<(&str, Option<&str>)> =
            app.pages_routes.iter().map(|r| (r.file.as_str(), r.method.as_deref())).collect();
        assert_eq!(
            order,
            [
                ("functions/_middleware.js", None),
                ("functions/fruits/apple.js", None),
                ("functions/fruits/[[rest]].js", None),
                ("functions/[id].js", Some("GET")),
                ("functions/index.js", None),
            ]
        );
        let includes: Vec<&str> = app.routes.iter().map(|r| r.regex.as_str()).collect();
        assert_eq!(includes, ["^(?:/.*)?$"], "root middleware puts everything under functions");
    }

    #[test]
    fn routes_json_rules() {
        let r = routes_rule("/foo/*");
        assert!(matches(&r, "/foo").is_some() && matches(&r, "/foo/").is_some() && matches(&r, "/foo/a/b").is_some());
        assert!(matches(&r, "/foobar").is_none());
        assert!(matches(&routes_rule("/"), "/").is_some() && matches(&routes_rule("/"), "/a").is_none());
        assert!(matches(&routes_rule("/foo*"), "/foobar").is_some());
        assert!(matches(&routes_rule("/foo"), "/foo/").is_some());
    }

    #[test]
    fn vercel_function_settings_apply_by_glob() {
        let src = FunctionSources {
            files: [("api/slow.ts", ""), ("api/fast.js", "")].into_iter().collect(),
            vercel_json: Some(r#"{ "functions": { "api/**/*.ts": { "maxDuration": 60, "memory": 512 } } }"#.into()),
            ..Default::default()
        };
        let fns = compile(&src).unwrap();
        assert_eq!(
            (fns[1].name.as_str(), fns[1].max_duration_ms, fns[1].memory_mib),
            ("api/slow", Some(60_000), Some(512))
        );
        assert_eq!(fns[0].max_duration_ms, None);
        let bad = FunctionSources {
            files: [("api/x.js", "")].into_iter().collect(),
            vercel_json: Some(r#"{ "functions": { "api/*.js": { "maxDuration": 5000 } } }"#.into()),
            ..Default::default()
        };
        assert!(compile(&bad).unwrap_err().contains("maxDuration"));
    }

    #[test]
    fn bad_pages_parameter_names_fail() {
        assert!(compile_files(&[("functions/[a-b].js", "export function onRequest() {}")]).is_err());
    }
}
