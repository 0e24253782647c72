//! A deployment's functions as the edge routes them and the runtime plane
//! runs them (DESIGN.md §4 `functions`), compiled at deploy time from the
//! function sources by `helix-config`.
//!
//! Patterns are regexes in the syntax both the `regex` crate and
//! JavaScript accept (anchored, unnamed groups); `params` names the groups
//! in order.

use serde::{Deserialize, Serialize};

/// Which platform's conventions a function follows: its handler shape
/// and where it sits in the routing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// `api/**`: `(req, res)`, `GET`/`POST`/… exports, `{ fetch }`.
    Vercel,
    /// `netlify/functions/*`: v1 `handler(event, context)`, v2
    /// `default (req, context)`.
    Netlify,
    /// `netlify/edge-functions/*`: `default (req, context)` before all
    /// other routing; returns a response, a URL to rewrite to, or nothing
    /// (`context.next()`) to go on.
    NetlifyEdge,
    /// `functions/**` of Cloudflare Pages: one app of file routes and
    /// middleware, `onRequest*(context)`.
    Pages,
}

/// The JavaScript runtime an instance runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    #[default]
    Node,
    Bun,
    Deno,
}

impl Runtime {
    pub fn parse(s: &str) -> Option<Runtime> {
        match s.trim().to_ascii_lowercase().as_str() {
            "node" | "nodejs" => Some(Runtime::Node),
            "bun" => Some(Runtime::Bun),
            "deno" => Some(Runtime::Deno),
            s if s.starts_with("nodejs") => Some(Runtime::Node),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Node => "node",
            Runtime::Bun => "bun",
            Runtime::Deno => "deno",
        }
    }
}

/// One URL pattern.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FnRoute {
    /// Anchored regex over the decoded request path.
    pub regex: String,
    /// Names of the regex's groups, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
    /// Compare without case and with one trailing slash ignored (Netlify).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub loose: bool,
}

/// A function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    /// Unique in the deployment: Netlify's function name, Vercel's path
    /// under `api/` without extension, `pages` for the Pages app.
    pub name: String,
    pub shape: Shape,
    /// Source path of the entry module, relative to the project root.
    pub entry: String,
    #[serde(default)]
    pub runtime: Runtime,
    /// Where requests reach it; empty: only by rewrite or schedule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<FnRoute>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<FnRoute>,
    /// Upper-case methods it answers; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// A static file at the path wins over the function (Netlify).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prefer_static: bool,
    /// Answered 202 at once and run to the end (Netlify `-background`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub background: bool,
    /// Cron schedule (UTC), if it runs on one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Longest a request may run, milliseconds (`None`: the server's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration_ms: Option<u64>,
    /// Memory per instance, MiB (`None`: the server's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// The Pages app's file routes, in precedence order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages_routes: Vec<PagesRoute>,
}

/// One route of a Cloudflare Pages app: a handler export of one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PagesRoute {
    /// Anchored JavaScript regex with named groups, trailing slash optional.
    pub pattern: String,
    /// `GET`, … for `onRequestGet`, …; `None` for `onRequest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Source path, relative to the project root.
    pub file: String,
    /// A `_middleware` file: runs for every request under its directory.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub middleware: bool,
    /// Groups that are catch-alls (`[[x]]`): arrays of segments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub catchall: Vec<String>,
}

/// A schedule: Vercel's (a path requested on production) or Netlify's (a
/// scheduled function, not reachable by URL).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cron {
    pub schedule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
}

impl Cron {
    /// Names the schedule (the path or the function).
    pub fn name(&self) -> &str {
        self.path.as_deref().or(self.function.as_deref()).unwrap_or_default()
    }
}

/// Longest a function may run a request, milliseconds (Netlify's
/// background limit).
pub const MAX_DURATION_MS: u64 = 15 * 60 * 1000;
