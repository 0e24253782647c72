//! Fuzz target: compile, then evaluate. Arbitrary rules of each platform
//! are compiled as a deploy compiles them, loaded as the edge loads a
//! manifest, and arbitrary requests go through the edge's route phase.
//! Nothing may panic, and a redirect's target never starts `//` unless
//! the rules themselves wrote one.
//!
//! Input: a byte picking the file and platform, the file's text, a 0xFF
//! byte, then the request: method byte, path, `?` query, `\n` header lines.
#![no_main]

use std::collections::BTreeMap;

use helix_config::{ProjectFiles, compile};
use helix_core::manifest::{FileEntry, MANIFEST_VERSION, Manifest};
use helix_core::routes::Platform;
use helix_core::{DeploymentId, Digest, ProjectName};
use helix_edge::route::RequestFacts;
use helix_edge::sites::Site;
use libfuzzer_sys::fuzz_target;

const FILES: &[(&str, bool, Platform)] = &[
    ("_redirects", false, Platform::Netlify),
    ("_headers", false, Platform::Netlify),
    ("netlify.toml", true, Platform::Netlify),
    ("_redirects", false, Platform::CloudflarePages),
    ("_headers", false, Platform::CloudflarePages),
    ("vercel.json", true, Platform::Vercel),
    ("helix.toml", true, Platform::Helix),
];

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let (name, at_root, platform) = FILES[pick as usize % FILES.len()];
    let split = rest.iter().position(|b| *b == 0xFF).unwrap_or(rest.len());
    let (rules, request) = (&rest[..split], rest.get(split + 1..).unwrap_or_default());
    let mut files = ProjectFiles::default();
    let target = if at_root { &mut files.root } else { &mut files.publish };
    target.insert(name.to_owned(), rules.to_vec());
    let compiled = compile(&files, Some(platform));
    if compiled.rejected() {
        return;
    }
    let entry = |p: &str| FileEntry {
        digest: Digest::of(p.as_bytes()),
        size: 1,
        content_type: "text/html".into(),
        encodings: Default::default(),
    };
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        deployment: DeploymentId::generate(1, 1),
        project: ProjectName::parse("fuzz").unwrap(),
        created_at_ms: 0,
        files: ["/index.html", "/a/index.html", "/b.html", "/404.html"].iter().map(|p| (p.to_string(), entry(p))).collect::<BTreeMap<_, _>>(),
        routes: compiled.table,
        function_sources: BTreeMap::new(),
        legacy_routes: None,
    };
    // Through the manifest's JSON, as the edge reads it.
    let site = Site::from_manifest(Manifest::from_json(&manifest.to_json()).unwrap(), Digest::of(b"fuzz"));

    let Ok(request) = std::str::from_utf8(request) else { return };
    let (method, request) = match request.chars().next() {
        Some(c) => (METHODS[c as usize % METHODS.len()], &request[c.len_utf8()..]),
        None => ("GET", request),
    };
    let mut lines = request.split('\n');
    let target = lines.next().unwrap_or_default();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    let mut headers = http::HeaderMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':')
            && let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(k.trim().as_bytes()), http::HeaderValue::from_str(v.trim()))
        {
            headers.append(k, v);
        }
    }
    let facts = RequestFacts {
        path: &path,
        method,
        headers: Some(&headers),
        query,
        host: "fuzz.localhost",
        country: headers.get("x-country").and_then(|v| v.to_str().ok()).map(Into::into),
        jwt_secret: Some(b"secret"),
        language: headers.get("accept-language").and_then(|v| v.to_str().ok()).map(Into::into),
    };
    let (status, location) = site.evaluate(&facts);
    assert!((100..=999).contains(&status), "{status}");
    if let Some(location) = location
        && (300..400).contains(&status)
        && location.starts_with("//")
    {
        assert!(rules.windows(2).any(|w| w == b"//"), "{location:?} from rules that never wrote `//`");
    }
});
