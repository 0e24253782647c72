//! What a 20,000-rule routing table costs the edge, measured as the
//! process's resident memory grows while the site loads and matches
//! requests (freed but retained heap counts too: an overestimate), against
//! a generous bound. One test in this binary, so nothing else runs beside
//! it.

use std::collections::BTreeMap;

use helix_core::manifest::{FileEntry, MANIFEST_VERSION, Manifest};
use helix_core::routes::Platform;
use helix_core::{DeploymentId, Digest, ProjectName};
use helix_edge::route::RequestFacts;
use helix_edge::sites::Site;

/// Resident bytes of this process.
fn rss() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: i64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn a_twenty_thousand_rule_table_takes_a_few_megabytes() {
    let mut redirects = String::new();
    for i in 0..20_000 {
        redirects.push_str(&format!("/p{i}/* /q{i}/:splat 301\n"));
    }
    let mut files = helix_config::ProjectFiles::default();
    files.publish.insert("_redirects".into(), redirects.into_bytes());
    let compiled = helix_config::compile(&files, Some(Platform::Netlify));
    assert_eq!(
        compiled.table.redirects.len(),
        20_000,
        "{:?}",
        &compiled.diagnostics[..1.min(compiled.diagnostics.len())]
    );
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        deployment: DeploymentId::generate(1, 1),
        project: ProjectName::parse("huge").unwrap(),
        created_at_ms: 0,
        files: BTreeMap::from([(
            "/index.html".to_owned(),
            FileEntry {
                digest: Digest::of(b"i"),
                size: 1,
                content_type: "text/html".into(),
                encodings: Default::default(),
            },
        )]),
        routes: compiled.table,
        function_sources: BTreeMap::new(),
        functions: Vec::new(),
        crons: Vec::new(),
        function_env: Default::default(),
        legacy_routes: None,
    };
    // What the edge reads: the manifest's JSON.
    let json = manifest.to_json();
    drop(manifest);
    drop(compiled.source);

    let before = rss();
    let site = Site::from_manifest(Manifest::from_json(&json).unwrap(), Digest::of(&json));
    for i in (0..20_000).step_by(97) {
        let path = format!("/p{i}/a/b");
        let facts = RequestFacts {
            path: &path,
            method: "GET",
            headers: None,
            query: None,
            host: "huge.localhost",
            country: None,
            jwt_secret: None,
            language: None,
            functions: true,
            after_edge: false,
        };
        assert_eq!(site.evaluate(&facts), (301, Some(format!("/q{i}/a/b"))));
    }
    let live = (rss() - before) as f64 / 1e6;
    println!("20,000 rules: {live:.1} MB resident; the site's own estimate {:.1} MB", site.weight() as f64 / 1e6);
    assert!(live < 40.0, "a 20,000-rule site takes {live:.1} MB");
    assert!(site.weight() as f64 / 1e6 > live / 8.0, "the cache's estimate is not far below the truth");
}
