//! Matching a request path against the patterns of one rule list, all at
//! once, in rule order.
//!
//! Each pattern is filed by form: exact paths in a hash map, segment
//! patterns by their first literal segment, prefixes in a short list,
//! regexes in `RegexSet`s (linear-time, bounded memory) with each rule's
//! own regex compiled only when a request first matches it, lookaround on
//! the bounded backtracking matcher. A request costs a few hash lookups
//! and one pass per regex set, not one try per rule, and a table of tens of
//! thousands of literal, prefix and segment rules stays small.

use std::collections::HashMap;
use std::sync::OnceLock;

use helix_core::routes::{LOOKAROUND_BACKTRACK_LIMIT, PathPattern, PatternForm, Rest, Segment, normalize_subject};

use super::target::Captures;

/// Regex patterns per set: small enough that a set's lazy DFA stays
/// within its cache, large enough that a typical table needs one pass.
const REGEX_SET_SIZE: usize = 128;
/// Segment patterns whose first literal segment comes later than this are
/// tried on every request.
const MAX_INDEXED_POSITION: usize = 16;
/// The lazy DFA cache of one set.
const REGEX_SET_DFA_BYTES: usize = 512 * 1024;
/// Compiled size one regex may reach.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Every pattern of a rule list.
pub(crate) struct PatternSet {
    /// One per combination of subject normalizations in use.
    groups: Vec<Group>,
    forms: Vec<Form>,
    /// Rules that could not be compiled here (never match).
    pub broken: usize,
}

/// Patterns that see the same normalized subject.
struct Group {
    fold_case: bool,
    slash_optional: bool,
    exact: HashMap<Box<str>, Vec<u32>>,
    /// Segment patterns by their first run of literal segments: its start
    /// and length (in segments), then its text (`blog/2024`).
    by_literals: HashMap<(u8, u8), HashMap<Box<str>, Vec<u32>>>,
    /// Prefix patterns by their prefix, and the prefix lengths in use.
    prefixes: HashMap<Box<str>, Vec<u32>>,
    prefix_lengths: Vec<usize>,
    /// Segment patterns without a literal segment and lookaround
    /// patterns: tried on every request (the compiler bounds how many).
    always: Vec<u32>,
    regex_sets: Vec<(regex::RegexSet, Vec<u32>)>,
}

impl Group {
    /// Every pattern of the group that may match `subject` (each then
    /// checked in full).
    fn candidates(&self, subject: &str, out: &mut Vec<u32>) {
        if let Some(list) = self.exact.get(subject) {
            out.extend_from_slice(list);
        }
        if !self.by_literals.is_empty() {
            // Where each segment starts and ends (the first ones only).
            let body = subject.strip_prefix('/').unwrap_or(subject);
            let mut bounds = [(0usize, 0usize); MAX_INDEXED_POSITION * 2];
            let mut count = 0;
            let mut start = 0;
            for (k, part) in body.split('/').enumerate().take(bounds.len()) {
                bounds[k] = (start, start + part.len());
                start += part.len() + 1;
                count = k + 1;
            }
            for (&(first, len), index) in &self.by_literals {
                let (first, len) = (usize::from(first), usize::from(len));
                if first + len > count {
                    continue;
                }
                let text = &body[bounds[first].0..bounds[first + len - 1].1];
                if let Some(list) = index.get(text) {
                    out.extend_from_slice(list);
                }
            }
        }
        for &len in &self.prefix_lengths {
            if let Some(head) = subject.get(..len)
                && let Some(list) = self.prefixes.get(head)
            {
                out.extend_from_slice(list);
            }
        }
        out.extend_from_slice(&self.always);
        for (rs, indices) in &self.regex_sets {
            if rs.is_match(subject) {
                out.extend(rs.matches(subject).into_iter().map(|k| indices[k]));
            }
        }
    }
}

/// A segment pattern's first run of literal segments (among its first
/// [`MAX_INDEXED_POSITION`]): where it starts, and its segments.
fn literal_run(segments: &[Segment]) -> Option<(usize, Vec<&str>)> {
    let start = segments.iter().take(MAX_INDEXED_POSITION).position(|s| matches!(s, Segment::Literal(_)))?;
    let run: Vec<&str> = segments[start..]
        .iter()
        .take(MAX_INDEXED_POSITION)
        .map_while(|s| match s {
            Segment::Literal(l) if !l.contains('/') => Some(l.as_str()),
            _ => None,
        })
        .collect();
    (!run.is_empty()).then_some((start, run))
}

enum Form {
    Exact,
    Prefix {
        prefix: Box<str>,
        capture: Option<Box<str>>,
    },
    Segments {
        segments: Vec<Segment>,
        rest: Option<Rest>,
    },
    Regex {
        source: Box<str>,
        compiled: OnceLock<Option<regex::Regex>>,
    },
    Lookaround(Box<fancy_regex::Regex>),
    /// Could not be compiled (a manifest from elsewhere); never matches.
    Never,
}

impl PatternSet {
    pub fn new(patterns: impl IntoIterator<Item = PathPattern>) -> PatternSet {
        let mut set = PatternSet { groups: Vec::new(), forms: Vec::new(), broken: 0 };
        let mut pending_regex: Vec<Vec<(u32, String)>> = Vec::new();
        for (i, pattern) in patterns.into_iter().enumerate() {
            let i = i as u32;
            let g = set.group_of(&pattern);
            if pending_regex.len() < set.groups.len() {
                pending_regex.resize_with(set.groups.len(), Vec::new);
            }
            let group = &mut set.groups[g];
            let form = match pattern.form {
                PatternForm::Exact { path } => {
                    group.exact.entry(path.into_boxed_str()).or_default().push(i);
                    Form::Exact
                }
                PatternForm::Prefix { prefix, capture } => {
                    if !group.prefix_lengths.contains(&prefix.len()) {
                        group.prefix_lengths.push(prefix.len());
                    }
                    group.prefixes.entry(prefix.as_str().into()).or_default().push(i);
                    Form::Prefix { prefix: prefix.into_boxed_str(), capture: capture.map(String::into_boxed_str) }
                }
                PatternForm::Segments { mut segments, rest } => {
                    match literal_run(&segments) {
                        Some((start, run)) => {
                            let key = (start as u8, run.len() as u8);
                            group.by_literals.entry(key).or_default().entry(run.join("/").into()).or_default().push(i)
                        }
                        None => group.always.push(i),
                    }
                    segments.shrink_to_fit();
                    Form::Segments { segments, rest }
                }
                PatternForm::Regex { regex, lookaround: false } => {
                    let source: Box<str> = regex.as_str().into();
                    pending_regex[g].push((i, regex));
                    Form::Regex { source, compiled: OnceLock::new() }
                }
                PatternForm::Regex { regex, lookaround: true } => {
                    match fancy_regex::RegexBuilder::new(&regex).backtrack_limit(LOOKAROUND_BACKTRACK_LIMIT).build() {
                        Ok(re) => {
                            group.always.push(i);
                            Form::Lookaround(Box::new(re))
                        }
                        Err(_) => {
                            set.broken += 1;
                            Form::Never
                        }
                    }
                }
            };
            set.forms.push(form);
        }
        for (g, pending) in pending_regex.into_iter().enumerate() {
            for chunk in pending.chunks(REGEX_SET_SIZE) {
                let built = regex::RegexSetBuilder::new(chunk.iter().map(|(_, re)| re.as_str()))
                    .size_limit(REGEX_SIZE_LIMIT * chunk.len().min(16))
                    .dfa_size_limit(REGEX_SET_DFA_BYTES)
                    .build();
                match built {
                    Ok(rs) => set.groups[g].regex_sets.push((rs, chunk.iter().map(|(i, _)| *i).collect())),
                    // One bad pattern spoils its set: file each pattern
                    // alone, and give up only on those that fail alone.
                    Err(_) => {
                        for (i, re) in chunk {
                            match regex::RegexSetBuilder::new([re.as_str()])
                                .size_limit(REGEX_SIZE_LIMIT)
                                .dfa_size_limit(REGEX_SET_DFA_BYTES / 8)
                                .build()
                            {
                                Ok(rs) => set.groups[g].regex_sets.push((rs, vec![*i])),
                                Err(_) => {
                                    set.broken += 1;
                                    set.forms[*i as usize] = Form::Never;
                                }
                            }
                        }
                    }
                }
            }
        }
        set
    }

    fn group_of(&mut self, p: &PathPattern) -> usize {
        if let Some(i) =
            self.groups.iter().position(|g| g.fold_case == p.fold_case && g.slash_optional == p.slash_optional)
        {
            return i;
        }
        self.groups.push(Group {
            fold_case: p.fold_case,
            slash_optional: p.slash_optional,
            exact: HashMap::new(),
            by_literals: HashMap::new(),
            prefixes: HashMap::new(),
            prefix_lengths: Vec::new(),
            always: Vec::new(),
            regex_sets: Vec::new(),
        });
        self.groups.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// The patterns matching `path`, in rule order, each with its
    /// captures; a pattern whose matcher gives up (the backtracking step
    /// limit) does not match, and `gave_up` says so.
    pub fn matches<'s>(&'s self, path: &str, gave_up: &mut bool) -> Vec<(usize, Captures<'s>)> {
        let mut out: Vec<(usize, Captures<'s>)> = Vec::new();
        let mut candidates: Vec<u32> = Vec::new();
        for group in &self.groups {
            let subject = normalize_subject(path, group.fold_case, group.slash_optional);
            group.candidates(&subject, &mut candidates);
            if candidates.is_empty() {
                continue;
            }
            candidates.sort_unstable();
            candidates.dedup();
            for i in candidates.drain(..) {
                if let Some(caps) = self.capture(i as usize, &subject, gave_up) {
                    out.push((i as usize, caps));
                }
            }
        }
        // Groups are filed apart: put their matches back in rule order.
        if self.groups.len() > 1 {
            out.sort_by_key(|(i, _)| *i);
        }
        out
    }

    /// Whether pattern `i` matches `subject` (already normalized), and its
    /// captures.
    fn capture<'s>(&'s self, i: usize, subject: &str, gave_up: &mut bool) -> Option<Captures<'s>> {
        let mut caps = Captures::default();
        match &self.forms[i] {
            Form::Exact => {}
            Form::Prefix { prefix, capture } => {
                let rest = subject.strip_prefix(&**prefix)?;
                if let Some(name) = capture {
                    caps.push(name, rest);
                }
            }
            Form::Segments { segments, rest } => segments_match(segments, rest.as_ref(), subject, &mut caps)?,
            Form::Regex { source, compiled } => {
                let re =
                    compiled.get_or_init(|| regex::RegexBuilder::new(source).size_limit(REGEX_SIZE_LIMIT).build().ok());
                let re = re.as_ref()?;
                let found = re.captures(subject)?;
                for name in re.capture_names().flatten() {
                    caps.push(name, found.name(name).map_or("", |m| m.as_str()));
                }
            }
            Form::Lookaround(re) => match re.captures(subject) {
                Ok(Some(found)) => {
                    for name in re.capture_names().flatten() {
                        caps.push(name, found.name(name).map_or("", |m| m.as_str()));
                    }
                }
                Ok(None) => return None,
                Err(_) => {
                    *gave_up = true;
                    return None;
                }
            },
            Form::Never => return None,
        }
        Some(caps)
    }

    /// Bytes the set takes, roughly (for the site cache): indexes and
    /// forms, plus a worst-case allowance for each regex rule's own
    /// compiled regex, which appears once a request matches it.
    pub fn memory_estimate(&self) -> usize {
        let mut total = self.forms.capacity() * std::mem::size_of::<Form>();
        for form in &self.forms {
            total += match form {
                Form::Exact | Form::Never => 0,
                Form::Prefix { prefix, capture } => prefix.len() + capture.as_ref().map_or(0, |c| c.len()),
                Form::Segments { segments, .. } => segments.iter().map(|s| segment_len(s) + 32).sum::<usize>() + 48,
                Form::Regex { source, .. } => source.len() * 16 + 8 * 1024,
                Form::Lookaround(_) => 64 * 1024,
            };
        }
        for group in &self.groups {
            total += group.exact.keys().map(|k| k.len() + 64).sum::<usize>();
            total += group.by_literals.values().flat_map(|m| m.keys()).map(|k| k.len() + 64).sum::<usize>();
            total += group.prefixes.keys().map(|k| k.len() + 64).sum::<usize>();
            total += group.always.len() * 4;
            total += group.regex_sets.len() * (REGEX_SET_DFA_BYTES + 64 * 1024);
        }
        total
    }
}

fn segment_len(s: &Segment) -> usize {
    match s {
        Segment::Literal(l) | Segment::Capture(l) => l.len(),
    }
}

/// Walks the pattern's segments along the subject.
fn segments_match<'s>(
    segments: &'s [Segment],
    rest: Option<&'s Rest>,
    subject: &str,
    caps: &mut Captures<'s>,
) -> Option<()> {
    let mut remaining = subject;
    for segment in segments {
        let after = remaining.strip_prefix('/')?;
        let end = after.find('/').unwrap_or(after.len());
        let (value, tail) = after.split_at(end);
        match segment {
            Segment::Literal(l) if value == l => {}
            Segment::Literal(_) => return None,
            Segment::Capture(_) if value.is_empty() => return None,
            Segment::Capture(name) => caps.push(name, value),
        }
        remaining = tail;
    }
    match rest {
        None => remaining.is_empty().then_some(()),
        Some(rest) if remaining.is_empty() => rest.optional.then(|| caps.push(&rest.capture, "")),
        Some(rest) => {
            let value = remaining.strip_prefix('/')?;
            caps.push(&rest.capture, value);
            Some(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use helix_core::routes::PatternForm;

    fn pattern(form: PatternForm) -> PathPattern {
        PathPattern { form, fold_case: false, slash_optional: false }
    }

    fn segs(s: &[&str], rest: Option<(&str, bool)>) -> PatternForm {
        PatternForm::Segments {
            segments: s
                .iter()
                .map(|x| match x.strip_prefix(':') {
                    Some(c) => Segment::Capture(c.into()),
                    None => Segment::Literal((*x).into()),
                })
                .collect(),
            rest: rest.map(|(c, optional)| Rest { capture: c.into(), optional }),
        }
    }

    fn hits(set: &PatternSet, path: &str) -> Vec<(usize, Vec<(String, String)>)> {
        let mut gave_up = false;
        set.matches(path, &mut gave_up)
            .into_iter()
            .map(|(i, c)| {
                let names = ["year", "slug", "splat", "x", "_1"];
                (i, names.iter().filter_map(|n| c.get(n).map(|v| (n.to_string(), v.to_string()))).collect())
            })
            .collect()
    }

    #[test]
    fn every_form_matches_in_rule_order() {
        let patterns = vec![
            pattern(segs(&["blog", ":year", ":slug"], None)),
            pattern(PatternForm::Exact { path: "/blog/2024/x".into() }),
            pattern(segs(&["news"], Some(("splat", true)))),
            pattern(PatternForm::Prefix { prefix: "/b".into(), capture: Some("splat".into()) }),
            pattern(PatternForm::Regex { regex: r"^/(?P<x>[a-z]+)/\d+$".into(), lookaround: false }),
            pattern(PatternForm::Regex { regex: r"^/(?P<_1>(?!api/).*)$".into(), lookaround: true }),
            pattern(segs(&[":x"], Some(("splat", false)))),
        ];
        let set = PatternSet::new(patterns);
        let got = hits(&set, "/blog/2024/x");
        let order: Vec<usize> = got.iter().map(|(i, _)| *i).collect();
        assert_eq!(order, [0, 1, 3, 5, 6]);
        assert_eq!(got[0].1, [("year".into(), "2024".into()), ("slug".into(), "x".into())]);
        assert_eq!(got[2].1, [("splat".into(), "log/2024/x".into())]);
        assert_eq!(got[4].1, [("splat".into(), "2024/x".into()), ("x".into(), "blog".into())]);
        let order: Vec<usize> = hits(&set, "/news").iter().map(|(i, _)| *i).collect();
        assert_eq!(order, [2, 5]);
        let order: Vec<usize> = hits(&set, "/api/7").iter().map(|(i, _)| *i).collect();
        assert_eq!(order, [4, 6], "lookahead refuses /api/");
        assert!(hits(&set, "/blog//x").iter().all(|(i, _)| *i != 0), "an empty segment is not a capture");
    }

    #[test]
    fn groups_normalize_their_subject() {
        let p = PathPattern { form: PatternForm::Exact { path: "/a/b".into() }, fold_case: true, slash_optional: true };
        let set = PatternSet::new([p]);
        assert_eq!(hits(&set, "/A/b/").len(), 1);
        assert_eq!(hits(&set, "/a/b/c").len(), 0);
    }

    #[test]
    fn broken_patterns_never_match() {
        let p = pattern(PatternForm::Regex { regex: "(".into(), lookaround: false });
        let ok = pattern(PatternForm::Regex { regex: "^/x$".into(), lookaround: false });
        let set = PatternSet::new([p, ok]);
        assert_eq!(set.broken, 1);
        assert_eq!(hits(&set, "/x").len(), 1);
    }
}
