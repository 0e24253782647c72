//! Functions deployed for real and called through the real edge: every
//! platform's shape from `helix deploy ROOT`, and hostile functions that
//! must be contained while the rest of the server keeps serving.

use std::path::Path;
use std::time::{Duration, Instant};

use helix_testkit::TestServer;
use reqwest::Method;

fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

fn deploy_args<'a>(
    dir: &'a Path,
    project: &'a str,
    publish_dir: Option<&'a Path>,
) -> helix_client::deploy::DeployArgs<'a> {
    helix_client::deploy::DeployArgs {
        dir,
        publish_dir,
        project: Some(project),
        production: true,
        compat: None,
        strict: false,
        alias: None,
        function_dirs: Vec::new(),
        context: None,
        branch: None,
        show_progress: false,
    }
}

/// `helix deploy ROOT` as the CLI runs it (the client's deploy).
async fn deploy(
    s: &TestServer,
    root: &Path,
    project: &str,
    publish: Option<&str>,
) -> helix_client::deploy::DeployReport {
    let api = helix_client::Api::new(&s.api(""), Some(s.token().to_owned())).unwrap();
    let args = deploy_args(root, project, publish.map(Path::new));
    let report = helix_client::deploy::deploy(&api, args).await.expect("deploys");
    s.wait_for_site(&format!("{project}.localhost")).await;
    report
}

async fn get(s: &TestServer, host: &str, path: &str) -> (u16, String) {
    let resp = s.edge(Method::GET, host, path).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_platform_shape_deploys_from_the_root_and_answers_through_the_edge() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let vercel = dir.path().join("vercel");
    write(
        &vercel,
        &[
            ("vercel.json", r#"{ "rewrites": [{ "source": "/u/:id", "destination": "/api/users/[id]" }] }"#),
            ("public/index.html", "home"),
            (
                "api/hello.js",
                "export default function handler(req, res) { res.status(200).send('hello ' + (req.query.name ?? 'world')) }",
            ),
            (
                "api/users/[id].js",
                "module.exports = (req, res) => res.json({ id: req.query.id, cookie: req.cookies.c ?? null })",
            ),
            ("api/_lib/util.js", "export const x = 1"),
            (
                "api/stream.mjs",
                "export function GET() { const s = new ReadableStream({ async start(c) { for (const w of ['a','b','c']) { c.enqueue(new TextEncoder().encode(w)); await new Promise(r => setTimeout(r, 30)); } c.close(); } }); return new Response(s, { headers: { 'content-type': 'text/event-stream' } }) }",
            ),
        ],
    );
    let report = deploy(&s, &vercel, "vc", Some("public")).await;
    assert_eq!(report.function_sources, 4, "{report:?}");
    assert_eq!(get(&s, "vc.localhost", "/api/hello.ts").await.0, 404, "sources are never files");
    let host = "vc.localhost";
    assert_eq!(get(&s, host, "/api/hello?name=ada").await, (200, "hello ada".into()));
    assert_eq!(get(&s, host, "/api/hello.js").await, (200, "hello world".into()));
    let (status, body) = get(&s, host, "/api/users/7").await;
    assert_eq!((status, body.as_str()), (200, r#"{"id":"7","cookie":null}"#));
    assert_eq!(get(&s, host, "/api/_lib/util").await.0, 404, "helpers are not functions");
    assert_eq!(get(&s, host, "/api/stream").await, (200, "abc".into()));
    assert_eq!(get(&s, host, "/").await, (200, "home".into()));

    let netlify = dir.path().join("netlify");
    write(
        &netlify,
        &[
            ("netlify.toml", "[build]\npublish = \"dist\"\n"),
            ("dist/index.html", "static"),
            ("dist/_redirects", "/go/*  /.netlify/functions/v1/:splat  200\n"),
            (
                "netlify/functions/v1.js",
                "exports.handler = async (event) => ({ statusCode: 201, headers: { 'x-fn': 'v1' }, body: event.path + '?' + (event.queryStringParameters.q ?? '') })",
            ),
            (
                "netlify/functions/v2.mjs",
                "export default async (req, context) => Response.json({ city: context.params.city, env: process.env.CONTEXT })\nexport const config = { path: '/travel/:city' }",
            ),
            (
                "netlify/functions/slow-background.mjs",
                "export default async () => { await new Promise(r => setTimeout(r, 200)); console.log('background done') }",
            ),
        ],
    );
    deploy(&s, &netlify, "nf", None).await;
    let host = "nf.localhost";
    let resp = s.edge(Method::GET, host, "/.netlify/functions/v1?q=1").send().await.unwrap();
    assert_eq!((resp.status().as_u16(), resp.headers()["x-fn"].to_str().unwrap()), (201, "v1"));
    assert_eq!(resp.text().await.unwrap(), "/.netlify/functions/v1?1");
    assert_eq!(
        get(&s, host, "/go/x?q=2").await,
        (201, "/go/x?2".into()),
        "a rewrite keeps the visitor's path in event.path"
    );
    let (status, body) = get(&s, host, "/travel/paris").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({ "city": "paris", "env": "production" })
    );
    assert_eq!(get(&s, host, "/.netlify/functions/v2").await.0, 404, "a path replaces the default URL");
    let started = Instant::now();
    assert_eq!(get(&s, host, "/.netlify/functions/slow-background").await, (202, String::new()));
    assert!(started.elapsed() < Duration::from_secs(5));
    let logs = s.running.runtime.logs();
    let q = helix_runtime::LogQuery { project: "nf".into(), ..Default::default() };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !logs.read(&q, 100).iter().any(|l| l.line == "background done") {
        assert!(Instant::now() < deadline, "the background function never finished: {:?}", logs.read(&q, 100));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let pages = dir.path().join("pages");
    write(
        &pages,
        &[
            ("wrangler.toml", "name = \"pg\"\npages_build_output_dir = \"public\"\n"),
            ("public/index.html", "static index"),
            ("public/about.html", "about"),
            (
                "functions/_middleware.js",
                "export async function onRequest(ctx) { const r = await ctx.next(); const out = new Response(r.body, r); out.headers.set('x-mw', 'yes'); out.headers.set('content-length', '1'); return out }",
            ),
            (
                "functions/api/[name].js",
                "export function onRequestGet(ctx) { return new Response('hi ' + ctx.params.name + ' ' + ctx.env.CF_PAGES) }",
            ),
            ("functions/files/[[path]].js", "export function onRequest(ctx) { return Response.json(ctx.params.path) }"),
            ("public/boom.html", "static boom"),
            (
                "functions/boom.js",
                "export function onRequest(ctx) { ctx.passThroughOnException(); throw new Error('boom') }",
            ),
            ("functions/crash.js", "export function onRequest() { throw new Error('crash') }"),
        ],
    );
    deploy(&s, &pages, "pg", None).await;
    let host = "pg.localhost";
    let resp = s.edge(Method::GET, host, "/api/ada").send().await.unwrap();
    assert_eq!(resp.headers().get("x-mw").map(|v| v.to_str().unwrap()), Some("yes"));
    assert_eq!(resp.text().await.unwrap(), "hi ada 1");
    assert_eq!(get(&s, host, "/files/a/b/c").await, (200, r#"["a","b","c"]"#.into()));
    let resp = s.edge(Method::GET, host, "/about").send().await.unwrap();
    assert_eq!(resp.headers().get("x-mw").map(|v| v.to_str().unwrap()), Some("yes"), "middleware wraps static assets");
    assert_eq!(resp.headers().get("content-length").map(|v| v.to_str().unwrap()), Some("5"), "never the app's framing");
    assert_eq!(resp.text().await.unwrap(), "about");
    assert_eq!(get(&s, host, "/boom").await, (200, "static boom".into()), "passThroughOnException serves the asset");
    assert_eq!(get(&s, host, "/crash").await.0, 500, "without it a throw is a 500");
    assert_eq!(
        s.edge(Method::POST, host, "/api/ada").send().await.unwrap().status(),
        405,
        "a method mismatch falls through to the assets"
    );

    // Logs through the API, and followed live as server-sent events.
    // Stored in batches: there within a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, page) = s.call(Method::GET, "/api/v1/projects/nf/logs?function=slow-background", None).await;
        assert_eq!(status, 200);
        if page["records"].as_array().unwrap().iter().any(|r| r["line"] == "background done" && r["request_id"] != "") {
            break;
        }
        assert!(Instant::now() < deadline, "not stored: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut follow = s
        .http
        .get(s.api("/api/v1/projects/vc/logs?follow=1&function=api/hello"))
        .bearer_auth(s.token())
        .send()
        .await
        .unwrap();
    let logged = vercel.join("api/hello.js");
    std::fs::write(&logged, "export default function (req, res) { console.log('live line'); res.send('x') }").unwrap();
    deploy(&s, &vercel, "vc", Some("public")).await;
    assert_eq!(get(&s, "vc.localhost", "/api/hello").await.0, 200);
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("live line") {
        let chunk = tokio::time::timeout_at(deadline.into(), follow.chunk())
            .await
            .expect("a live line arrives")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: line"), "{seen}");

    // Each function's counters are visible.
    let stats = s.running.runtime.stats();
    assert!(
        stats.iter().any(|f| f.project == "vc" && f.function == "api/hello" && f.stats.invocations == 2),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_functions_are_contained_and_everything_else_keeps_serving() {
    let s = TestServer::start_with(|c| {
        c.runtime.timeout_ms = 2000;
        c.runtime.memory_mib = 192;
        c.runtime.max_response_bytes = 1 << 20;
        c.runtime.max_tasks = 64;
    })
    .await;
    let api_port = s.running.api_addr.port();
    let data_dir = s.data_dir.path().display().to_string();
    let own_ip = if_addrs::get_if_addrs()
        .unwrap()
        .into_iter()
        .find(|i| !i.is_loopback() && i.ip().is_ipv4())
        .map(|i| i.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let dir = tempfile::tempdir().unwrap();
    let probe = "export default function (req, res) { res.send('ok') }";
    let connect = |host: &str| {
        format!(
            "import net from 'node:net'; export default function (req, res) {{ const s = net.connect({{ host: '{host}', port: {api_port}, timeout: 1000 }}); s.on('connect', () => {{ res.send('connected'); s.destroy() }}); s.on('error', (e) => res.send('refused ' + e.code)); s.on('timeout', () => {{ res.send('refused timeout'); s.destroy() }}) }}"
        )
    };
    let files: Vec<(String, String)> = vec![
        ("public/index.html".into(), "home".into()),
        ("api/probe.js".into(), probe.into()),
        ("api/loop.js".into(), "export default function () { for (;;) {} }".into()),
        ("api/hang.js".into(), "export default function () {}".into()),
        ("api/throw.js".into(), "export default function () { throw new Error('nope') }".into()),
        ("api/alloc.js".into(), "const keep = []; export default function () { for (;;) keep.push(new Array(1e6).fill(7)) }".into()),
        ("api/fork.js".into(), "import { spawn } from 'node:child_process'; export default function (req, res) { let ok = 0, failed = 0; for (let i = 0; i < 200; i++) { try { const c = spawn('sleep', ['5']); c.on('spawn', () => ok++); c.on('error', () => failed++) } catch { failed++ } } setTimeout(() => res.send('spawned ' + ok + ' failed ' + failed), 1000) }".into()),
        ("api/write.js".into(), "import fs from 'node:fs'; export default function (req, res) { const out = []; for (const p of ['/fn/x', '/usr/x', '/etc/x', '/tmp/x']) { try { fs.writeFileSync(p, '1'); out.push(p + ':wrote') } catch (e) { out.push(p + ':' + e.code) } } res.send(out.join(' ')) }".into()),
        ("api/read.js".into(), format!("import fs from 'node:fs'; export default function (req, res) {{ const out = []; for (const p of ['/etc/shadow', '/proc/1/environ', '{data_dir}/secret.key', '{data_dir}/helix.db']) {{ try {{ fs.readFileSync(p); out.push(p + ':read') }} catch (e) {{ out.push(p + ':' + e.code) }} }} res.send(out.join(' ') + ' env:' + Object.keys(process.env).filter(k => k.includes('TOKEN') || k.includes('DATABASE') || k === 'HOME' && process.env.HOME === '/root').join(',')) }}")),
        ("api/loopback.js".into(), connect("127.0.0.1")),
        ("api/own.js".into(), connect(&own_ip)),
        ("api/big.js".into(), "export default function (req, res) { res.write('x'.repeat(1 << 19)); res.write('x'.repeat(1 << 19)); res.end('x'.repeat(1 << 19)) }".into()),
    ];
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    write(dir.path(), &refs);
    deploy(&s, dir.path(), "hostile", Some("public")).await;
    let host = "hostile.localhost";
    let other = tempfile::tempdir().unwrap();
    write(other.path(), &[("public/index.html", "other"), ("api/probe.js", probe)]);
    deploy(&s, other.path(), "other", Some("public")).await;
    assert_eq!(get(&s, "other.localhost", "/api/probe").await, (200, "ok".into()));

    // A probe to another project's function stays fast while `path` runs.
    async fn contained(s: &TestServer, path: &str) -> (u16, String) {
        let hostile = get(s, "hostile.localhost", path);
        let probe = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let started = Instant::now();
            let r = get(s, "other.localhost", "/api/probe").await;
            (r, started.elapsed())
        };
        let (out, (probed, took)) = tokio::join!(hostile, probe);
        assert_eq!(probed, (200, "ok".into()), "during {path}");
        assert!(took < Duration::from_millis(1500), "the probe took {took:?} during {path}");
        out
    }

    assert_eq!(contained(&s, "/api/loop").await.0, 504);
    assert_eq!(contained(&s, "/api/hang").await.0, 504);
    assert_eq!(contained(&s, "/api/throw").await.0, 500);
    let (status, body) = contained(&s, "/api/alloc").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("memory"), "{body}");
    let (status, body) = contained(&s, "/api/fork").await;
    let spawned: u32 = body.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(status == 502 || (status == 200 && spawned < 64), "{status} {body}");
    let (_, body) = contained(&s, "/api/write").await;
    assert_eq!(body, "/fn/x:EROFS /usr/x:EROFS /etc/x:EROFS /tmp/x:wrote");
    let (_, body) = contained(&s, "/api/read").await;
    assert!(!body.contains(":read"), "{body}");
    assert!(body.ends_with("env:"), "{body}");
    let (_, body) = contained(&s, "/api/loopback").await;
    assert!(body.starts_with("refused"), "{body}");
    let (_, body) = contained(&s, "/api/own").await;
    assert!(body.starts_with("refused"), "{body}");
    let resp = s.edge(Method::GET, host, "/api/big").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err(), "a response over the limit is cut, not completed");

    // After all of it the hostile project's own functions still answer.
    assert_eq!(get(&s, host, "/api/probe").await, (200, "ok".into()));
    assert_eq!(get(&s, host, "/").await, (200, "home".into()));

    // 1,000 concurrent requests to one function: each gets an answer.
    let many: Vec<_> = (0..1000)
        .map(|_| {
            let req = s.edge(Method::GET, host, "/api/probe");
            tokio::spawn(async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(0) })
        })
        .collect();
    let mut ok = 0;
    for r in many {
        let status = r.await.unwrap();
        assert!(status == 200 || status == 503, "status {status}");
        ok += usize::from(status == 200);
    }
    assert!(ok > 900, "{ok} of 1000 answered 200");
    let logs = s
        .running
        .runtime
        .logs()
        .read(&helix_runtime::LogQuery { project: "hostile".into(), ..Default::default() }, 1000);
    assert!(logs.iter().any(|l| l.line.contains("504")), "timeouts are logged");
    assert!(logs.iter().any(|l| l.line.contains("nope")), "a throw's stack is logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn typescript_with_an_npm_dependency_is_bundled_and_a_syntax_error_fails_the_deploy() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("package.json", r#"{ "name": "ts", "dependencies": { "is-number": "7.0.0" } }"#),
            ("public/index.html", "ts"),
            (
                "api/check.ts",
                "import isNumber from 'is-number';\nimport { label } from './_lib/label';\ntype Q = { n?: string };\nexport default function handler(req: { query: Q }, res: any) { res.send(label(isNumber(req.query.n ?? ''))) }",
            ),
            ("api/_lib/label.ts", "export const label = (b: boolean): string => (b ? 'number' : 'not a number');"),
            (
                "netlify/functions/cjs.cjs",
                "const path = require('node:path'); exports.handler = async () => ({ statusCode: 200, body: path.posix.join('a', 'b') })",
            ),
        ],
    );
    deploy(&s, dir.path(), "ts", Some("public")).await;
    assert_eq!(get(&s, "ts.localhost", "/api/check?n=42").await, (200, "number".into()));
    assert_eq!(get(&s, "ts.localhost", "/api/check?n=x").await, (200, "not a number".into()));
    assert_eq!(get(&s, "ts.localhost", "/.netlify/functions/cjs").await, (200, "a/b".into()));

    let broken = tempfile::tempdir().unwrap();
    write(
        broken.path(),
        &[("public/index.html", "b"), ("api/broken.ts", "export default function (req, res) {\n  res.send(\n}")],
    );
    let api = helix_client::Api::new(&s.api(""), Some(s.token().to_owned())).unwrap();
    let args = deploy_args(broken.path(), "broken", Some(Path::new("public")));
    let text = format!("{:#}", helix_client::deploy::deploy(&api, args).await.unwrap_err());
    assert!(text.contains("api/broken.ts:3"), "the error names the file and line: {text}");
    let missing = tempfile::tempdir().unwrap();
    write(
        missing.path(),
        &[("public/index.html", "m"), ("api/m.js", "import x from 'no-such-package'; export default () => x")],
    );
    let args = deploy_args(missing.path(), "missing", Some(Path::new("public")));
    let text = format!("{:#}", helix_client::deploy::deploy(&api, args).await.unwrap_err());
    assert!(text.contains("no-such-package") && text.contains("api/m.js"), "{text}");
    assert_eq!(get(&s, "broken.localhost", "/").await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_function_that_cannot_load_fails_the_deploy_naming_the_file_and_changes_nothing() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[("public/index.html", "v1"), ("functions/[bad-name].js", "export function onRequest() {}")]);
    let api = helix_client::Api::new(&s.api(""), Some(s.token().to_owned())).unwrap();
    let args = deploy_args(dir.path(), "bad", Some(Path::new("public")));
    let err = helix_client::deploy::deploy(&api, args).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("functions/[bad-name].js") && text.contains("invalid parameter name"), "{text}");
    assert_eq!(get(&s, "bad.localhost", "/").await.0, 404, "nothing was served");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promote_prewarms_the_new_deployments_functions_as_the_old_ones_ran() {
    let s = TestServer::start_with(|c| c.runtime.concurrency = 16).await;
    let files: &[(&str, &[u8])] = &[("/index.html", b"home")];
    let v1: &[(&str, &[u8])] = &[("api/hi.js", b"export default (req, res) => setTimeout(() => res.send('v1'), 300)")];
    assert_eq!(s.deploy_functions("warm", files, &[], v1).await.0, 200);
    s.wait_for_site("warm.localhost").await;
    // Enough at once that the pool grows past one instance (16 per instance).
    let calls: Vec<_> = (0..40).map(|_| get(&s, "warm.localhost", "/api/hi")).collect();
    for (status, _) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200);
    }
    let before = s.running.runtime.stats();
    let old = before.iter().find(|f| f.project == "warm").unwrap();
    assert!(old.instances >= 2 && old.instances <= 4, "grown, within its cap of 4: {before:?}");

    let v2: &[(&str, &[u8])] = &[("api/hi.js", b"export default (req, res) => res.send('v2')")];
    let (status, done) = s.deploy_functions_beside("warm", files, v2).await;
    assert_eq!(status, 200, "{done}");
    let id = done["id"].as_str().unwrap().to_owned();
    let (status, _) = s.call(Method::POST, &format!("/api/v1/deployments/{id}/promote"), None).await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = s.running.runtime.stats();
        if let Some(new) = stats.iter().find(|f| f.deployment == id && f.instances >= old.instances) {
            assert_eq!((new.stats.prewarmed as usize, new.stats.invocations), (old.instances, 0));
            break;
        }
        assert!(Instant::now() < deadline, "not pre-warmed: {stats:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(&s, "warm.localhost", "/api/hi").await, (200, "v2".into()));
    let new = s.running.runtime.stats().into_iter().find(|f| f.deployment == id).unwrap();
    assert_eq!((new.stats.cold_starts, new.stats.pool_hits), (0, 1), "the first request found a warm instance");
}

#[tokio::test(flavor = "multi_thread")]
async fn netlify_context_environment_reaches_functions_by_deploy_context() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "netlify.toml",
                "[build]\npublish = \"dist\"\n[build.environment]\nGREETING = \"build\"\nKEPT = \"base\"\n\
                 [context.production.environment]\nGREETING = \"prod\"\n\
                 [context.deploy-preview.environment]\nGREETING = \"preview\"\n",
            ),
            ("dist/index.html", "home"),
            (
                "netlify/functions/env.js",
                "exports.handler = async () => ({ statusCode: 200, body: `${process.env.GREETING} ${process.env.KEPT} ${process.env.CONTEXT} ${process.env.VERCEL_ENV}` })",
            ),
        ],
    );
    deploy(&s, dir.path(), "ctx", None).await;
    assert_eq!(
        get(&s, "ctx.localhost", "/.netlify/functions/env").await,
        (200, "prod base production production".into())
    );

    // A deployment that is not production is a deploy preview.
    let api = helix_client::Api::new(&s.api(""), Some(s.token().to_owned())).unwrap();
    let mut args = deploy_args(dir.path(), "ctx", None);
    args.production = false;
    let preview = helix_client::deploy::deploy(&api, args).await.expect("deploys");
    let host = preview.url.split("://").nth(1).unwrap().split([':', '/']).next().unwrap().to_owned();
    s.wait_for_site(&host).await;
    assert_eq!(get(&s, &host, "/.netlify/functions/env").await, (200, "preview base deploy-preview preview".into()));
    // Promoted, it keeps the context it was made in (as on Netlify).
    let (status, _) = s.call(Method::POST, &format!("/api/v1/deployments/{}/promote", preview.id), None).await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&s, "ctx.localhost", "/.netlify/functions/env").await.1 != "preview base deploy-preview preview" {
        assert!(
            Instant::now() < deadline,
            "the promoted preview does not answer with its own context (and VERCEL_ENV)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A context that is not Netlify's is refused, naming the known ones.
    let mut args = deploy_args(dir.path(), "ctx", None);
    args.context = Some("staging");
    let err = helix_client::deploy::deploy(&api, args).await.expect_err("refused").to_string();
    assert!(err.contains("context \"staging\" is not one of production, deploy-preview"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn what_next_answers_is_a_real_response_of_the_functions_own_deployment_only() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Another project's file, which no function of `nx` may reach.
    let other = dir.path().join("other");
    write(&other, &[("public/index.html", "other home"), ("public/secret.html", "SECRET")]);
    deploy(&s, &other, "other", Some("public")).await;

    let pages = dir.path().join("pages");
    write(
        &pages,
        &[
            ("wrangler.toml", "name = \"nx\"\npages_build_output_dir = \"public\"\n"),
            ("public/index.html", "home"),
            ("public/blog/post.html", "<p>a post</p>"),
            ("public/shell.html", "the shell"),
            ("public/_headers", "/blog/*\n  X-Rule: on\n"),
            // Reads what `next()` answered and rewrites its body.
            (
                "functions/blog/_middleware.js",
                "export async function onRequest(ctx) { const r = await ctx.next(); \
                 if (!(r.headers.get('content-type') ?? '').startsWith('text/html')) return r; \
                 const out = new Response((await r.text()).toUpperCase(), r); out.headers.set('x-seen', r.headers.get('x-rule')); return out }",
            ),
            // A single-page app's shell for every path under /app.
            (
                "functions/app/[[path]].js",
                "export function onRequest(ctx) { return ctx.env.ASSETS.fetch(new URL('/shell', ctx.request.url)) }",
            ),
            // Changes only a header of what `next()` answered.
            (
                "functions/_middleware.js",
                "export async function onRequest(ctx) { const r = await ctx.next(); r.headers.set('cache-control', 'max-age=7'); return r }",
            ),
            // Asks for its own path: the asset, never itself again.
            ("functions/again.js", "export function onRequest(ctx) { return ctx.env.ASSETS.fetch(ctx.request.url) }"),
            // Passes on 300 requests at once: served in turns, all of them.
            (
                "functions/many.js",
                "export async function onRequest(ctx) { const all = await Promise.all(Array.from({ length: 300 }, () => \
                 ctx.env.ASSETS.fetch(new URL('/shell', ctx.request.url)).then((r) => r.text()))); \
                 return new Response(String(all.filter((t) => t === 'the shell').length)) }",
            ),
            // Tries to reach another project.
            (
                "functions/steal.js",
                "export async function onRequest(ctx) { const out = []; \
                 for (const u of ['http://other.localhost/secret', 'http://other.localhost/']) { const r = await ctx.env.ASSETS.fetch(u); out.push(r.status + ' ' + await r.text()) } \
                 return new Response(out.join('|')) }",
            ),
        ],
    );
    deploy(&s, &pages, "nx", None).await;
    let host = "nx.localhost";
    let resp = s.edge(Method::GET, host, "/blog/post").send().await.unwrap();
    assert_eq!(resp.headers()["x-seen"], "on", "next() carried the _headers rule");
    let etag = resp.headers()["etag"].clone();
    assert_eq!(resp.text().await.unwrap(), "<P>A POST</P>", "the middleware read the asset's body");
    // A browser's revalidation: the middleware still reads the whole body
    // (not a 304 it could not rewrite).
    let resp = s.edge(Method::GET, host, "/blog/post").header("if-none-match", etag).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "<P>A POST</P>");
    let resp = s.edge(Method::GET, host, "/blog/post").header("range", "bytes=0-1").send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "<P>A POST</P>", "nor a range of it");
    // Handed back unread, the visitor's own conditions apply.
    let resp = s.edge(Method::GET, host, "/shell").send().await.unwrap();
    let etag = resp.headers()["etag"].clone();
    let resp = s.edge(Method::GET, host, "/shell").header("if-none-match", etag).send().await.unwrap();
    assert_eq!(resp.status(), 304, "an asset passed on unread revalidates");
    assert_eq!(get(&s, host, "/app/a/b").await, (200, "the shell".into()), "ASSETS.fetch of another path");
    let resp = s.edge(Method::GET, host, "/shell").header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(resp.headers()["cache-control"], "max-age=7", "the middleware's header wins");
    assert_eq!(resp.text().await.unwrap(), "the shell");
    // The host is not followed: each is this deployment's own path (a
    // missing one gets its single-page fallback, as on Pages).
    assert_eq!(get(&s, host, "/steal").await, (200, "200 home|200 home".into()));
    assert_eq!(get(&s, host, "/again").await, (200, "home".into()), "no function answers what a function passed on");
    let many = tokio::spawn({
        let request = s.edge(Method::GET, host, "/many");
        async move { request.send().await.unwrap().text().await.unwrap() }
    });
    let probe = Instant::now();
    assert_eq!(get(&s, "other.localhost", "/").await, (200, "other home".into()));
    assert!(probe.elapsed() < Duration::from_secs(2), "another project waited {:?}", probe.elapsed());
    assert_eq!(many.await.unwrap(), "300");

    // A Netlify edge function's `context.next()`: a file, or a function.
    let netlify = dir.path().join("netlify");
    write(
        &netlify,
        &[
            ("netlify.toml", "[build]\npublish = \"public\"\n"),
            ("public/up/page.html", "shout"),
            (
                "netlify/edge-functions/up.js",
                "export default async (req, ctx) => { const r = await ctx.next(); return new Response((await r.text()).toUpperCase(), r) }\n\
                 export const config = { path: '/up/*' }",
            ),
            (
                "netlify/functions/fn.mjs",
                "export default async () => new Response('from a function')\nexport const config = { path: '/up/fn' }",
            ),
        ],
    );
    deploy(&s, &netlify, "ne", None).await;
    assert_eq!(get(&s, "ne.localhost", "/up/page").await, (200, "SHOUT".into()));
    assert_eq!(get(&s, "ne.localhost", "/up/fn").await, (200, "FROM A FUNCTION".into()));

    // The same on Bun and Deno.
    for js in ["bun", "deno"] {
        if !["/usr/bin", "/usr/local/bin"].iter().any(|d| Path::new(d).join(js).exists()) {
            eprintln!("skipped {js}: not installed (cargo xtask setup installs it)");
            continue;
        }
        let root = dir.path().join(js);
        write(
            &root,
            &[
                ("wrangler.toml", "pages_build_output_dir = \"public\"\n"),
                ("helix.toml", &format!("[functions]\nruntime = \"{js}\"\n")),
                ("public/index.html", "home"),
                ("public/page.html", "quiet"),
                (
                    "functions/_middleware.js",
                    "export async function onRequest(ctx) { const r = await ctx.next(); return new Response((await r.text()).toUpperCase() + ' ' + (globalThis.Bun ? 'bun' : globalThis.Deno ? 'deno' : 'node'), r) }",
                ),
            ],
        );
        deploy(&s, &root, js, None).await;
        assert_eq!(get(&s, &format!("{js}.localhost"), "/page").await, (200, format!("QUIET {js}")));
    }
}
