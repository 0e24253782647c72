//! Functions run for real: node in the sandbox, the harness, the pool.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use helix_artifacts::{BlobStore, LocalBlobStore};
use helix_core::functions::{Function, Runtime as Js, Shape};
use helix_core::{DeploymentId, Digest};
use helix_runtime::{Call, Runtime, RuntimeSettings};
use http::Request;
use http_body_util::{BodyExt, Full};

struct Fixture {
    _dir: tempfile::TempDir,
    rt: Runtime,
    blobs: Arc<LocalBlobStore>,
}

async fn fixture(tweak: impl FnOnce(&mut RuntimeSettings)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Arc::new(LocalBlobStore::open(dir.path().join("blobs")).unwrap());
    let mut settings = RuntimeSettings { spares: 1, memory_mib: 256, ..RuntimeSettings::default() };
    tweak(&mut settings);
    let rt = Runtime::start(settings, dir.path(), blobs.clone()).unwrap();
    Fixture { _dir: dir, rt, blobs }
}

impl Fixture {
    async fn sources(&self, files: &[(&str, &str)]) -> Arc<BTreeMap<String, Digest>> {
        let mut out = BTreeMap::new();
        for (path, text) in files {
            let d = self.blobs.put_bytes(Bytes::from(text.to_string())).await.unwrap();
            out.insert((*path).to_owned(), d);
        }
        Arc::new(out)
    }

    async fn call(
        &self,
        deployment: &DeploymentId,
        function: &Arc<Function>,
        sources: &Arc<BTreeMap<String, Digest>>,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, String) {
        let call = Call {
            deployment: deployment.clone(),
            project: "p".into(),
            function: function.clone(),
            sources: sources.clone(),
            request_id: format!("req-{path}"),
            url: format!("http://p.localhost{path}"),
            params: vec![("id".into(), "42".into())],
            env: Arc::new(|_| vec![("GREETING".into(), "hello".into())]),
        };
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "p.localhost")
            .header("content-type", "application/json")
            .body(helix_runtime::body(Full::new(Bytes::from(body.to_owned()))))
            .unwrap();
        let resp = self.rt.invoke(call, req).await;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

fn function(name: &str, shape: Shape, entry: &str) -> Arc<Function> {
    Arc::new(Function {
        name: name.into(),
        shape,
        entry: entry.into(),
        runtime: Default::default(),
        routes: vec![],
        excluded: vec![],
        methods: vec![],
        prefer_static: false,
        background: false,
        schedule: None,
        max_duration_ms: None,
        memory_mib: None,
        pages_routes: vec![],
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_handler_shape_answers() {
    let fx = fixture(|_| {}).await;
    let dep = DeploymentId::generate(1, rand_id());
    let src = fx
        .sources(&[
            (
                "api/node.js",
                "export default function handler(req, res) { res.status(201).json({ q: req.query, body: req.body, env: process.env.GREETING }) }",
            ),
            ("api/web.mjs", "export function GET(req) { return new Response('web ' + new URL(req.url).pathname) }"),
            ("api/fetch.mjs", "export default { fetch(req) { return new Response(req.method) } }"),
            (
                "netlify/functions/v1.js",
                "exports.handler = async (event) => ({ statusCode: 200, headers: { 'x-v': '1' }, body: event.queryStringParameters.a + ':' + event.httpMethod })",
            ),
            ("netlify/functions/v2.mjs", "export default async (req, context) => new Response('v2 ' + context.params.id)"),
        ])
        .await;
    let node = function("api/node", Shape::Vercel, "api/node.js");
    let (status, body) = fx.call(&dep, &node, &src, "POST", "/api/node?x=1", r#"{"a":1}"#).await;
    assert_eq!(status, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["q"], serde_json::json!({ "x": "1", "id": "42" }));
    assert_eq!(v["body"]["a"], 1);
    assert_eq!(v["env"], "hello");

    let web = function("api/web", Shape::Vercel, "api/web.mjs");
    assert_eq!(fx.call(&dep, &web, &src, "GET", "/api/web", "").await, (200, "web /api/web".into()));
    assert_eq!(fx.call(&dep, &web, &src, "POST", "/api/web", "").await.0, 405, "Vercel's 405 for a missing method");
    let fetch = function("api/fetch", Shape::Vercel, "api/fetch.mjs");
    assert_eq!(fx.call(&dep, &fetch, &src, "PUT", "/api/fetch", "").await, (200, "PUT".into()));
    let v1 = function("v1", Shape::Netlify, "netlify/functions/v1.js");
    assert_eq!(fx.call(&dep, &v1, &src, "GET", "/.netlify/functions/v1?a=b", "").await, (200, "b:GET".into()));
    let v2 = function("v2", Shape::Netlify, "netlify/functions/v2.mjs");
    assert_eq!(fx.call(&dep, &v2, &src, "GET", "/x", "").await, (200, "v2 42".into()));

    let stats = fx.rt.stats();
    let node_stats = stats.iter().find(|s| s.function == "api/node").unwrap();
    assert_eq!((node_stats.stats.invocations, node_stats.stats.cold_starts), (1, 1));
    // Warm: the second call is a pool hit.
    fx.call(&dep, &node, &src, "GET", "/api/node", "").await;
    let stats = fx.rt.stats();
    assert_eq!(stats.iter().find(|s| s.function == "api/node").unwrap().stats.pool_hits, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throw_a_hang_and_a_crash_are_contained_and_the_next_request_succeeds() {
    let fx = fixture(|s| s.timeout_ms = 1500).await;
    let dep = DeploymentId::generate(1, rand_id());
    let src = fx
        .sources(&[
            ("api/throw.js", "export default function () { throw new Error('boom') }"),
            (
                "api/hang.js",
                "export default function (req, res) { if (req.query.hang) { for (;;) {} } res.send('ok') }",
            ),
            (
                "api/crash.js",
                "export default function (req, res) { if (req.query.crash) process.exit(3); res.send('ok') }",
            ),
        ])
        .await;
    let throw = function("api/throw", Shape::Vercel, "api/throw.js");
    assert_eq!(fx.call(&dep, &throw, &src, "GET", "/api/throw", "").await.0, 500);
    let hang = function("api/hang", Shape::Vercel, "api/hang.js");
    let started = Instant::now();
    let (status, body) = fx.call(&dep, &hang, &src, "GET", "/api/hang?hang=1", "").await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("req-/api/hang?hang=1"), "the request id is in the answer: {body}");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(fx.call(&dep, &hang, &src, "GET", "/api/hang", "").await, (200, "ok".into()), "a fresh instance");
    let crash = function("api/crash", Shape::Vercel, "api/crash.js");
    assert_eq!(fx.call(&dep, &crash, &src, "GET", "/api/crash?crash=1", "").await.0, 502);
    assert_eq!(fx.call(&dep, &crash, &src, "GET", "/api/crash", "").await, (200, "ok".into()));
    let logs = fx.rt.logs().read(&helix_runtime::LogQuery { project: "p".into(), ..Default::default() }, 100);
    let text: Vec<String> = logs.iter().map(|l| l.line.clone()).collect();
    assert!(text.iter().any(|l| l.contains("boom")), "{text:?}");
    assert!(text.iter().any(|l| l.contains("504")), "{text:?}");
    assert!(text.iter().any(|l| l.contains("status 3")), "{text:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_syntax_error_is_reported_with_the_file() {
    let fx = fixture(|_| {}).await;
    let dep = DeploymentId::generate(1, rand_id());
    let src = fx.sources(&[("api/bad.js", "export default function ( {")]).await;
    let bad = function("api/bad", Shape::Vercel, "api/bad.js");
    assert_eq!(fx.call(&dep, &bad, &src, "GET", "/api/bad", "").await.0, 502);
    let logs = fx.rt.logs().read(&helix_runtime::LogQuery { project: "p".into(), ..Default::default() }, 100);
    assert!(logs.iter().any(|l| l.line.contains("bad.js") && l.line.contains("SyntaxError")), "{logs:?}");
}

fn rand_id() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    u128::from(std::process::id()) << 64 | u128::from(N.fetch_add(1, Ordering::Relaxed))
}

/// Calls `api/a`, `api/b`, … in `order`; the server never holds more than
/// two instances.
async fn call_in_turn(fx: &Fixture, order: &[&str]) {
    let dep = DeploymentId::generate(1, rand_id());
    let files: Vec<(String, String)> = ["a", "b", "c"]
        .iter()
        .map(|n| (format!("api/{n}.js"), format!("export default (req, res) => res.send('{n}')")))
        .collect();
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
    let src = fx.sources(&refs).await;
    for name in order {
        let f = function(&format!("api/{name}"), Shape::Vercel, &format!("api/{name}.js"));
        assert_eq!(fx.call(&dep, &f, &src, "GET", &format!("/api/{name}"), "").await, (200, (*name).to_owned()));
        assert!(fx.rt.instances() <= 2, "{} instances where two fit", fx.rt.instances());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn at_the_server_cap_the_idlest_instance_makes_room() {
    let fx = fixture(|s| {
        s.max_total = Some(2);
        s.spares = 0;
    })
    .await;
    call_in_turn(&fx, &["a", "b", "c", "a"]).await;
    let stats = fx.rt.stats();
    assert_eq!(stats.iter().find(|s| s.function == "api/a").unwrap().stats.cold_starts, 2, "a was evicted for c");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_memory_cap_bounds_the_instances_as_the_count_does() {
    // 256 MiB each, 600 MiB in all: two instances at most.
    let fx = fixture(|s| {
        s.max_memory_mib = Some(600);
        s.spares = 0;
    })
    .await;
    call_in_turn(&fx, &["a", "b", "c"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bun_and_deno_run_the_same_shapes_when_a_function_asks_for_them() {
    let fx = fixture(|_| {}).await;
    let dep = DeploymentId::generate(1, rand_id());
    let src = fx
        .sources(&[
            ("api/node.mjs", "export default function (req, res) { res.status(200).send('ran on ' + (globalThis.Bun ? 'bun' : globalThis.Deno ? 'deno' : 'node') + ' ' + req.query.q) }"),
            ("api/web.mjs", "export function GET(req) { return new Response('web ' + new URL(req.url).searchParams.get('q')) }"),
        ])
        .await;
    for js in [Js::Bun, Js::Deno] {
        let found = ["/usr/bin", "/usr/local/bin"].iter().any(|d| std::path::Path::new(d).join(js.as_str()).exists());
        if !found {
            eprintln!("skipped {}: not installed (cargo xtask setup installs it)", js.as_str());
            continue;
        }
        for (name, entry, want) in [
            ("api/node", "api/node.mjs", format!("ran on {} 1", js.as_str())),
            ("api/web", "api/web.mjs", "web 1".to_owned()),
        ] {
            let mut f = (*function(name, Shape::Vercel, entry)).clone();
            f.runtime = js;
            f.name = format!("{name}-{}", js.as_str());
            let (status, body) = fx.call(&dep, &Arc::new(f), &src, "GET", &format!("/{name}?q=1"), "").await;
            assert_eq!((status, body.as_str()), (200, want.as_str()), "{} {name}", js.as_str());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_function_logging_in_a_loop_is_cut_at_the_line_rate() {
    let fx = fixture(|_| {}).await;
    let dep = DeploymentId::generate(1, rand_id());
    let src = fx
        .sources(&[(
            "api/noisy.js",
            "export default (req, res) => { for (let i = 0; i < 20000; i++) console.log('line ' + i); setTimeout(() => { console.log('after'); res.send('done') }, 1100) }",
        )])
        .await;
    let f = function("api/noisy", Shape::Vercel, "api/noisy.js");
    assert_eq!(fx.call(&dep, &f, &src, "GET", "/api/noisy", "").await, (200, "done".into()));
    // The instance's output is read beside the response: under load its
    // last lines (and the note the next second's first line brings) may
    // land a moment after the answer.
    let query = helix_runtime::LogQuery { project: "p".into(), ..Default::default() };
    let mut logs = fx.rt.logs().read(&query, 50_000);
    for _ in 0..50 {
        if logs.iter().any(|l| l.line.contains("lines dropped")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        logs = fx.rt.logs().read(&query, 50_000);
    }
    let lines = logs.iter().filter(|l| l.line.starts_with("line ")).count();
    assert!(lines <= 2000, "{lines} of 20,000 lines kept");
    assert!(logs.iter().any(|l| l.line.contains("lines dropped")), "the drop is said");
}

#[tokio::test(flavor = "multi_thread")]
async fn log_lines_of_overlapping_requests_carry_their_own_request_ids() {
    let fx = fixture(|_| {}).await;
    let dep = DeploymentId::generate(1, rand_id());
    let src = fx
        .sources(&[(
            "api/slow.js",
            "setTimeout(() => console.log('module timer'), 400)\nexport default async (req, res) => { console.log('start ' + req.query.n); await new Promise(r => setTimeout(r, 100 - 10 * req.query.n)); console.log('end ' + req.query.n); res.end('ok') }",
        )])
        .await;
    let f = function("api/slow", Shape::Vercel, "api/slow.js");
    // The first request, alone: its lines are its own.
    assert_eq!(fx.call(&dep, &f, &src, "GET", "/api/slow?n=0", "").await.0, 200);
    // Then five at once, each ending while others wait.
    let calls = (1..=5).map(|n| {
        let path = format!("/api/slow?n={n}");
        let (fx, dep, f, src) = (&fx, &dep, &f, &src);
        async move { fx.call(dep, f, src, "GET", &path, "").await }
    });
    for (status, _) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200);
    }
    let logs = fx.rt.logs().read(&helix_runtime::LogQuery { project: "p".into(), ..Default::default() }, 1000);
    for n in 0..=5 {
        for what in ["start", "end"] {
            let line = format!("{what} {n}");
            let record = logs.iter().find(|l| l.line == line).unwrap_or_else(|| panic!("no {line:?} in {logs:?}"));
            assert_eq!(record.request_id, format!("req-/api/slow?n={n}"), "{line}");
        }
    }
    // Code no request started logs untagged.
    let deadline = Instant::now() + Duration::from_secs(3);
    let timer = loop {
        let logs = fx.rt.logs().read(&helix_runtime::LogQuery { project: "p".into(), ..Default::default() }, 1000);
        if let Some(l) = logs.into_iter().find(|l| l.line == "module timer") {
            break l;
        }
        assert!(Instant::now() < deadline, "the module's timer never logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(timer.request_id, "", "a module-level timer belongs to no request");
}

#[tokio::test(flavor = "multi_thread")]
async fn once_loaded_every_path_is_the_functions_even_the_harness_own() {
    let fx = fixture(|_| {}).await;
    let dep = DeploymentId::generate(1, rand_id());
    let src =
        fx.sources(&[("api/all.js", "export default (req, res) => res.end('fn ' + req.method + ' ' + req.url)")]).await;
    let f = function("api/all", Shape::Vercel, "api/all.js");
    for (method, path) in [("GET", "/__helix/warm"), ("POST", "/__helix/load"), ("GET", "/x")] {
        assert_eq!(fx.call(&dep, &f, &src, method, path, "{}").await, (200, format!("fn {method} {path}")));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_function_scales_to_zero_its_files_are_removed_and_the_next_request_starts_it_again() {
    let fx = fixture(|s| s.idle_secs = 1).await;
    let dep = DeploymentId::generate(1, rand_id());
    let src = fx.sources(&[("api/idle.js", "export default (req, res) => res.end('up')")]).await;
    let f = function("api/idle", Shape::Vercel, "api/idle.js");
    let trees = fx._dir.path().join("runtime/trees");
    let written = || std::fs::read_dir(&trees).unwrap().count();
    assert_eq!(fx.call(&dep, &f, &src, "GET", "/api/idle", "").await, (200, "up".into()));
    assert_eq!(written(), 1, "the deployment's sources are written for its instance");
    let alive = |fx: &Fixture| fx.rt.stats().iter().find(|s| s.function == "api/idle").map_or(0, |s| s.instances);
    assert_eq!(alive(&fx), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(&fx) > 0 || written() > 0 {
        assert!(Instant::now() < deadline, "still {} instance(s), {} tree(s)", alive(&fx), written());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fx.call(&dep, &f, &src, "GET", "/api/idle", "").await, (200, "up".into()), "and back");
    let stats = fx.rt.stats().into_iter().find(|s| s.function == "api/idle").unwrap();
    assert_eq!((stats.instances, stats.stats.cold_starts), (1, 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_background_function_is_retried_twice_then_left() {
    let fx = fixture(|s| s.background_retry_secs = 1).await;
    let dep = DeploymentId::generate(1, rand_id());
    let src = fx
        .sources(&[(
            "api/bg.js",
            "let n = 0; export default async (req, res) => { n++; console.log('run ' + n); throw new Error('failed ' + n) }",
        )])
        .await;
    let mut f = (*function("api/bg", Shape::Vercel, "api/bg.js")).clone();
    f.background = true;
    let f = Arc::new(f);
    let started = Instant::now();
    assert_eq!(fx.call(&dep, &f, &src, "POST", "/api/bg", "{}").await, (202, String::new()));
    let q = helix_runtime::LogQuery { project: "p".into(), function: Some("api/bg".into()), ..Default::default() };
    let lines = || fx.rt.logs().read(&q, 100).into_iter().map(|l| l.line).collect::<Vec<_>>();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !lines().iter().any(|l| l == "run 3") {
        assert!(Instant::now() < deadline, "not retried: {:?}", lines());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started.elapsed() >= Duration::from_secs(3), "retried after 1 s, then 2 s");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let lines = lines();
    let runs: Vec<_> = lines.iter().filter(|l| l.starts_with("run ")).collect();
    assert_eq!(runs, ["run 1", "run 2", "run 3"], "three runs in all: {lines:?}");
    assert!(lines.iter().any(|l| l.contains("background run failed (500); retrying in 2 s (run 3 of 3)")), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn once_a_function_asks_for_bun_or_deno_a_spare_of_it_waits_for_the_next() {
    let fx = fixture(|_| {}).await;
    let src = fx.sources(&[("api/s.mjs", "export default (req, res) => res.end('up')")]).await;
    for js in [Js::Bun, Js::Deno] {
        if !["/usr/bin", "/usr/local/bin"].iter().any(|d| std::path::Path::new(d).join(js.as_str()).exists()) {
            eprintln!("skipped {}: not installed (cargo xtask setup installs it)", js.as_str());
            continue;
        }
        let mut f = (*function("api/s", Shape::Vercel, "api/s.mjs")).clone();
        f.runtime = js;
        let f = Arc::new(f);
        let spare_starts = |dep: &DeploymentId| {
            fx.rt.stats().iter().find(|s| s.deployment == dep.as_str()).map_or(0, |s| s.stats.spare_starts)
        };
        let first = DeploymentId::generate(1, rand_id());
        assert_eq!(fx.call(&first, &f, &src, "GET", "/api/s", "").await, (200, "up".into()));
        assert_eq!(spare_starts(&first), 0, "no {} spare before a function asked for it", js.as_str());
        // Each deployment's first request is a cold start: soon one finds
        // the spare that the first one's asked for.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let next = DeploymentId::generate(1, rand_id());
            assert_eq!(fx.call(&next, &f, &src, "GET", "/api/s", "").await, (200, "up".into()));
            if spare_starts(&next) == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "no {} spare was started", js.as_str());
        }
    }
}
