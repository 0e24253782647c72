//! A deployment's functions as the route phase finds them: each route's
//! regex compiled once per loaded site. Which function answers a path, in
//! the manifest's order; where that happens in a platform's order is the
//! platform module's business.

use std::sync::Arc;

use helix_core::functions::{FnRoute, Function, Shape};
use regex::Regex;

/// Most functions one deployment's table compiles (more are ignored, and
/// the deploy reported them).
const MAX_FUNCTIONS: usize = 2000;

pub(crate) struct Functions {
    list: Vec<Compiled>,
}

struct Compiled {
    def: Arc<Function>,
    routes: Vec<(Regex, FnRoute)>,
    excluded: Vec<(Regex, FnRoute)>,
}

/// A function chosen for a request, and its route parameters.
pub(crate) struct Chosen<'s> {
    pub function: &'s Arc<Function>,
    pub params: Vec<(String, String)>,
    /// The path and query the function is told it was asked for, when a
    /// rewrite changed them (Vercel); else the request's own.
    pub rewritten: Option<String>,
}

impl Functions {
    pub fn new(defs: Vec<Function>) -> Functions {
        let compile = |routes: &[FnRoute]| -> Vec<(Regex, FnRoute)> {
            routes
                .iter()
                .filter_map(|r| {
                    let re = regex::RegexBuilder::new(&r.regex).size_limit(1 << 20).build().ok()?;
                    Some((re, r.clone()))
                })
                .collect()
        };
        let list = defs
            .into_iter()
            .take(MAX_FUNCTIONS)
            .map(|f| Compiled { routes: compile(&f.routes), excluded: compile(&f.excluded), def: Arc::new(f) })
            .collect();
        Functions { list }
    }

    /// The first function of `shape` whose routes take `path` and
    /// `method` (scheduled ones answer no URL).
    pub fn find(&self, shape: Shape, path: &str, method: &str) -> Option<Chosen<'_>> {
        self.list.iter().filter(|c| c.def.shape == shape && c.def.schedule.is_none()).find_map(|c| {
            if !c.def.methods.is_empty() && !c.def.methods.iter().any(|m| m == method) {
                return None;
            }
            let params = c.routes.iter().find_map(|(re, r)| captures(re, r, path))?;
            if c.excluded.iter().any(|(re, r)| captures(re, r, path).is_some()) {
                return None;
            }
            Some(Chosen { function: &c.def, params, rewritten: None })
        })
    }

    pub fn memory_estimate(&self) -> usize {
        self.list.iter().map(|c| 512 + c.routes.len() * 4096).sum()
    }
}

fn captures(re: &Regex, route: &FnRoute, path: &str) -> Option<Vec<(String, String)>> {
    let subject = if route.loose {
        let p = if path.len() > 1 { path.strip_suffix('/').unwrap_or(path) } else { path };
        std::borrow::Cow::Owned(p.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(path)
    };
    let caps = re.captures(&subject)?;
    Some(
        route
            .params
            .iter()
            .zip(caps.iter().skip(1))
            .filter_map(|(name, m)| Some((name.clone(), m?.as_str().to_owned())))
            .collect(),
    )
}
