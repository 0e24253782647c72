//! Schedules fire for real: a Vercel path cron and a Netlify scheduled
//! function, every minute, on two servers sharing one Postgres — each
//! slot runs once in the cluster.

use std::time::{Duration, Instant};

use helix_testkit::{TestServer, fresh_postgres};
use reqwest::Method;

#[tokio::test(flavor = "multi_thread")]
async fn crons_fire_once_per_minute_across_two_servers() {
    let Some(url) = fresh_postgres("crons_fire_once").await else {
        eprintln!("skipped: HELIX_TEST_DATABASE_URL is not set");
        return;
    };
    let a = TestServer::start_with(|c| c.database_url = Some(url.clone())).await;
    let files: &[(&str, &[u8])] = &[("/index.html", b"home")];
    let vercel = br#"{ "crons": [{ "path": "/api/tick", "schedule": "* * * * *" }] }"#;
    let tick = b"export default function (req, res) { console.log('tick from ' + req.headers['user-agent']); res.send('ticked') }";
    let nightly = b"export default async (req) => { const { next_run } = await req.json(); console.log('scheduled, next ' + next_run); return new Response('ok') }\nexport const config = { schedule: '* * * * *' }";
    let (status, done) = a
        .deploy_functions(
            "tick",
            files,
            &[("vercel.json", vercel)],
            &[("api/tick.js", tick), ("netlify/functions/every.mjs", nightly)],
        )
        .await;
    assert_eq!(status, 200, "{done}");
    a.wait_for_site("tick.localhost").await;
    // A scheduled function answers no URL.
    assert_eq!(a.get_edge("tick.localhost", "/.netlify/functions/every").await.status(), 404);

    // The second server shares the first one's blobs (as a fleet shares
    // its artifact store) and starts after the deploy.
    let b = TestServer::start_with(|c| {
        c.database_url = Some(url.clone());
        std::fs::create_dir_all(&c.data_dir).unwrap();
        std::os::unix::fs::symlink(a.data_dir.path().join("blobs"), c.data_dir.join("blobs")).unwrap();
    })
    .await;

    // Both schedules run, each once per minute, on one server or the other.
    let deadline = Instant::now() + Duration::from_secs(130);
    let (crons, runs) = loop {
        let (_, crons) = a.call(Method::GET, "/api/v1/projects/tick/crons", None).await;
        let list = crons["crons"].as_array().cloned().unwrap_or_default();
        let finished = |name: &str| list.iter().any(|c| c["name"] == name && c["last_run"]["status"] == "ok");
        if finished("/api/tick") && finished("every") {
            let runs: Vec<_> = list.iter().map(|c| c["last_run"].clone()).collect();
            break (list, runs);
        }
        assert!(Instant::now() < deadline, "the schedules did not both run: {crons}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(crons.iter().all(|c| c["next_run"].as_str().is_some_and(|n| n.ends_with(":00Z"))), "{crons:?}");
    assert_eq!(runs[0]["slot_ms"], runs[1]["slot_ms"], "the same minute");
    let slot = runs[0]["slot_ms"].as_i64().unwrap();

    // Every run of that minute, across both servers' logs: exactly one tick
    // and one scheduled invocation.
    let lines = |s: &TestServer| {
        s.running.runtime.logs().read(&helix_runtime::LogQuery { project: "tick".into(), ..Default::default() }, 1000)
    };
    let all: Vec<_> = lines(&a).into_iter().chain(lines(&b)).collect();
    let in_slot = |needle: &str| {
        all.iter().filter(|l| l.line.contains(needle) && l.ts_ms >= slot && l.ts_ms < slot + 60_000).count()
    };
    assert_eq!(in_slot("tick from vercel-cron/1.0"), 1, "{all:?}");
    assert_eq!(in_slot("scheduled, next "), 1, "{all:?}");
    let next = helix_core::cron::rfc3339(slot + 60_000);
    assert!(all.iter().any(|l| l.line == format!("scheduled, next {next}")), "next_run is the next minute: {all:?}");
}
