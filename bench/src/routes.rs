//! Route evaluation cost: a site with N rules (the mix a real site has:
//! mostly exact paths, some `:placeholder` rules, a few splats) and a mix
//! of requests that hit each kind or miss every rule; nanoseconds per
//! request through the edge's route phase, for each platform's semantics.

use std::collections::BTreeMap;
use std::time::Instant;

use helix_core::manifest::{FileEntry, Manifest};
use helix_core::routes::v1::{Redirect, RouteTable};
use helix_core::routes::{Origin, Platform};
use helix_core::{DeploymentId, Digest, ProjectName};
use helix_edge::route::RequestFacts;
use helix_edge::sites::Site;

fn site(rules: usize, platform: Platform) -> Site {
    let mut files = BTreeMap::new();
    for i in 0..200 {
        let path = format!("/pages/page-{i}.html");
        let entry = FileEntry {
            digest: Digest::of(path.as_bytes()),
            size: 1000,
            content_type: "text/html; charset=utf-8".into(),
            encodings: Default::default(),
        };
        files.insert(path, entry);
    }
    let redirects = (0..rules)
        .map(|i| {
            let (from, to) = match i % 10 {
                0..=5 => (format!("/old/page-{i}"), format!("/pages/page-{}.html", i % 200)),
                6..=8 => (format!("/blog/{i}/:slug"), format!("/posts/{i}/:slug")),
                _ => (format!("/docs-{i}/*"), format!("/d/{i}/:splat")),
            };
            Redirect {
                from,
                query: Vec::new(),
                to,
                status: 301,
                force: false,
                conditions: Default::default(),
                has: Vec::new(),
                missing: Vec::new(),
                methods: Vec::new(),
                proxy_headers: Vec::new(),
                origin: Origin { file: "_redirects".into(), line: i as u32 + 1 },
            }
        })
        .collect();
    // The rules as a platform's files would parse (past the platform's
    // own limits), lowered as the compiler lowers every table.
    let manifest = Manifest {
        version: 1,
        deployment: DeploymentId::generate(1, 1),
        project: ProjectName::parse("bench").expect("valid name"),
        created_at_ms: 0,
        files,
        routes: Default::default(),
        function_sources: Default::default(),
        functions: Vec::new(),
        crons: Vec::new(),
        function_env: Default::default(),
        legacy_routes: Some(RouteTable { platform, redirects, ..RouteTable::default() }),
    };
    Site::from_manifest(manifest, Digest::of(b"bench"))
}

/// Requests: a quarter each exact hits, placeholder hits, splat hits and
/// static files no rule matches (the worst case: every rule is a miss).
fn requests(rules: usize) -> Vec<String> {
    let mut out = Vec::new();
    for k in 0..400usize {
        let i = (k * 7919) % rules;
        out.push(match k % 4 {
            0 => format!("/old/page-{}", i - i % 10),
            1 => format!("/blog/{}/hello-world", i - i % 10 + 6),
            2 => format!("/docs-{}/a/b/c", i - i % 10 + 9),
            _ => format!("/pages/page-{}.html", k % 200),
        });
    }
    out
}

pub fn run(sizes: &[usize]) {
    println!("{:<18} {:>7} {:>12} {:>12}", "platform", "rules", "build ms", "ns/request");
    for platform in [Platform::Netlify, Platform::CloudflarePages] {
        for &n in sizes {
            let built = Instant::now();
            let site = site(n, platform);
            let build_ms = built.elapsed().as_secs_f64() * 1000.0;
            let paths = requests(n);
            let mut statuses = [0u64; 6];
            let rounds = (200_000 / paths.len()).max(1);
            let started = Instant::now();
            for _ in 0..rounds {
                for path in &paths {
                    let facts = RequestFacts {
                        path,
                        method: "GET",
                        headers: None,
                        query: None,
                        host: "bench.localhost",
                        country: None,
                        jwt_secret: None,
                        language: None,
                        functions: true,
                        after_edge: false,
                    };
                    let (status, _) = site.evaluate(&facts);
                    statuses[(status / 100) as usize % 6] += 1;
                }
            }
            let per = started.elapsed().as_nanos() as f64 / (rounds * paths.len()) as f64;
            assert!(statuses[3] > 0, "rules fired");
            println!("{:<18} {:>7} {:>12.1} {:>12.0}", platform.as_str(), n, build_ms, per);
        }
    }
}
