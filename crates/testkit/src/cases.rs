//! Routing conformance cases (`tests/routing/*.case`): a project's files,
//! a request, and what must come back.
//!
//! ```text
//! # comment lines
//! compat: netlify            whose semantics (netlify, cloudflare-pages, vercel)
//! publish: public            the publish directory inside the files
//! kind: http                 or `parse` (compile only)
//! skip: reason               optional: not run, and the reason is printed
//! --- file public/_redirects
//! /a /b 301
//! --- request
//! GET /a?x=1
//! accept-language: en        request headers
//! --- expect
//! status: 301
//! header location: /b?x=1
//! no-header x-robots-tag
//! body-file: public/b.html   or a `--- expect-body` section
//! parsed-count: 2            parse cases: rules kept
//! error: regex               parse cases: some diagnostic matches
//! ```

use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
pub struct Case {
    pub id: String,
    pub compat: String,
    pub publish: String,
    pub kind: String,
    pub skip: Option<String>,
    pub files: Vec<(String, String)>,
    pub request: Option<CaseRequest>,
    pub expect: Expect,
}

#[derive(Debug, Default)]
pub struct CaseRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Default)]
pub struct Expect {
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub absent: Vec<String>,
    pub body_file: Option<String>,
    pub body: Option<String>,
    pub proxy_to: Option<String>,
    pub parsed_count: Option<usize>,
    pub errors: Vec<String>,
}

impl Case {
    /// The case's files inside the publish directory, by site path.
    pub fn published(&self) -> impl Iterator<Item = (String, &str)> {
        let prefix =
            if self.publish.is_empty() || self.publish == "." { String::new() } else { format!("{}/", self.publish) };
        self.files.iter().filter_map(move |(path, content)| {
            path.strip_prefix(&prefix).map(|rest| (format!("/{rest}"), content.as_str()))
        })
    }

    /// Files at the project root (outside the publish directory).
    /// Files in the platforms' function directories (sent with a deploy
    /// as function sources).
    pub fn function_sources(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files
            .iter()
            .filter(|(p, _)| {
                ["netlify/functions/", "netlify/edge-functions/", "api/", "functions/"].iter().any(|d| p.starts_with(d))
            })
            .map(|(p, c)| (p.as_str(), c.as_str()))
    }

    pub fn root_file(&self, name: &str) -> Option<&str> {
        self.files.iter().find(|(p, _)| p == name).map(|(_, c)| c.as_str())
    }

    pub fn file(&self, path: &str) -> Option<&str> {
        self.files.iter().find(|(p, _)| p == path).map(|(_, c)| c.as_str())
    }
}

pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/routing")
}

/// Every case, sorted by id.
pub fn load_all() -> Vec<Case> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("tests/routing exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "case"))
        .collect();
    paths.sort();
    paths.iter().map(|p| parse(p)).collect()
}

fn parse(path: &Path) -> Case {
    let text = std::fs::read_to_string(path).expect("case file is UTF-8");
    let mut case = Case { id: path.file_stem().unwrap_or_default().to_string_lossy().into_owned(), ..Case::default() };
    let mut section: Option<String> = None;
    let mut body: Vec<&str> = Vec::new();
    let flush = |case: &mut Case, section: &Option<String>, body: &mut Vec<&str>| {
        let Some(section) = section else { return };
        let text = body.join("\n");
        if let Some(name) = section.strip_prefix("file ") {
            case.files.push((name.to_owned(), format!("{text}\n")));
        } else if section == "request" {
            let mut lines = body.iter();
            let first = lines.next().expect("request line");
            let (method, path) = first.split_once(' ').expect("METHOD PATH");
            let headers = lines.filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            case.request = Some(CaseRequest { method: method.to_owned(), path: path.to_owned(), headers });
        } else if section == "expect" {
            for line in body.iter() {
                let e = &mut case.expect;
                if let Some(v) = line.strip_prefix("status: ") {
                    e.status = v.trim().parse().ok();
                } else if let Some(rest) = line.strip_prefix("header ") {
                    let (k, v) = rest.split_once(": ").unwrap_or((rest.trim_end_matches(':'), ""));
                    e.headers.push((k.to_ascii_lowercase(), v.to_owned()));
                } else if let Some(k) = line.strip_prefix("no-header ") {
                    e.absent.push(k.trim().to_ascii_lowercase());
                } else if let Some(v) = line.strip_prefix("body-file: ") {
                    e.body_file = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("proxy-to: ") {
                    e.proxy_to = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("parsed-count: ") {
                    e.parsed_count = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("error: ") {
                    e.errors.push(v.to_owned());
                }
            }
        } else if section == "expect-body" {
            case.expect.body = Some(text);
        }
        body.clear();
    };
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("--- ") {
            flush(&mut case, &section, &mut body);
            section = Some(name.to_owned());
            continue;
        }
        match &section {
            Some(_) => body.push(line),
            None => {
                if line.starts_with('#') || line.trim().is_empty() {
                    continue;
                }
                let (k, v) = line.split_once(": ").unwrap_or((line, ""));
                match k {
                    "compat" => case.compat = v.to_owned(),
                    "publish" => case.publish = v.to_owned(),
                    "kind" => case.kind = v.to_owned(),
                    "skip" => case.skip = Some(v.to_owned()),
                    _ => panic!("{}: unknown case field {k:?}", path.display()),
                }
            }
        }
    }
    flush(&mut case, &section, &mut body);
    case
}
