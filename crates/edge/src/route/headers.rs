//! Header rules: every rule whose path (and host) matches adds or removes
//! headers, merged the platform's way — Cloudflare Pages joins repeated
//! names with `, `, the others let a later rule's value win.
//!
//! The compiler already left out every rule touching framing or hop-by-hop
//! headers; the edge drops them again when it loads a table, so no
//! manifest, however made, can forge a response's framing.

use helix_core::routes::{HeaderRule, PathPattern, Platform, forbidden_response_header};
use regex::Regex;

use super::RouteNotes;
use super::matcher::PatternSet;
use super::target::{Captures, render_text};

pub(super) struct HeaderRules {
    platform: Platform,
    rules: Vec<(HeaderRule, Option<Regex>)>,
    patterns: PatternSet,
}

impl HeaderRules {
    pub fn new(platform: Platform, rules: Vec<HeaderRule>) -> HeaderRules {
        let mut patterns = Vec::with_capacity(rules.len());
        let rules: Vec<(HeaderRule, Option<Regex>)> = rules
            .into_iter()
            .map(|mut rule| {
                rule.set.retain(|(name, _)| !forbidden_response_header(name));
                rule.unset.retain(|name| !forbidden_response_header(name));
                // A host pattern that does not compile matches no host.
                let host = rule.host.as_deref().map(|h| Regex::new(h).unwrap_or_else(|_| super::never()));
                patterns.push(std::mem::replace(&mut rule.pattern, PathPattern::exact("")));
                (rule, host)
            })
            .collect();
        HeaderRules { platform, rules, patterns: PatternSet::new(patterns) }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// `(name, Some(value))` to set, `(name, None)` to remove, in order.
    pub fn for_request(&self, host: &str, path: &str, notes: &mut RouteNotes) -> Vec<(String, Option<String>)> {
        let mut out: Vec<(String, Option<String>)> = Vec::new();
        if self.rules.is_empty() {
            return out;
        }
        let mut gave_up = false;
        let matches = self.patterns.matches(path, &mut gave_up);
        notes.backtrack_limit |= gave_up;
        for (i, path_caps) in matches {
            let (rule, host_re) = &self.rules[i];
            let mut caps = Captures::default();
            if let Some(re) = host_re {
                let Some(found) = re.captures(host) else { continue };
                for name in re.capture_names().flatten() {
                    caps.push(name, found.name(name).map_or("", |m| m.as_str()));
                }
            }
            caps.extend(path_caps);
            for name in &rule.unset {
                out.retain(|(n, _)| n != name);
                out.push((name.clone(), None));
            }
            for (name, template) in &rule.set {
                let value = render_text(template, &caps);
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

    pub fn memory_estimate(&self) -> usize {
        let rules: usize = self
            .rules
            .iter()
            .map(|(r, host)| {
                let values: usize = r.set.iter().map(|(n, v)| n.len() + v.display().len() + 64).sum();
                std::mem::size_of::<HeaderRule>() + values + r.unset.len() * 32 + host.as_ref().map_or(0, |_| 16 * 1024)
            })
            .sum();
        rules + self.patterns.memory_estimate()
    }
}
