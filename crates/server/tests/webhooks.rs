//! Outgoing webhooks against a real receiver on loopback: versioned,
//! signed envelopes; retries with backoff that survive a restart; a
//! delivery log; and no reaching this machine unless the operator allows.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use helix_testkit::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

/// What the receiver saw, and how many requests it still fails.
#[derive(Default)]
struct Seen {
    requests: Vec<(HeaderMap, Value)>,
    fail_next: usize,
    hits: usize,
}

type Receiver = Arc<Mutex<Seen>>;

async fn receive(State(seen): State<Receiver>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let mut s = seen.lock().unwrap();
    s.hits += 1;
    if s.fail_next > 0 {
        s.fail_next -= 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    s.requests.push((headers, serde_json::from_slice(&body).unwrap_or(Value::Null)));
    StatusCode::NO_CONTENT
}

async fn receiver() -> (String, Receiver) {
    let seen = Receiver::default();
    let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

async fn wait_for(seen: &Receiver, what: &str, pred: impl Fn(&Seen) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if pred(&seen.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never saw {what}: {:?}", seen.lock().unwrap().requests.iter().map(|r| &r.1).collect::<Vec<_>>());
}

fn types(seen: &Seen) -> Vec<String> {
    seen.requests.iter().map(|(_, b)| b["type"].as_str().unwrap_or("").to_owned()).collect()
}

const SECRET: &str = "whsec_test_secret_0123456789";

fn allowing(c: &mut helix_server::Config) {
    c.api.webhook_allow = vec!["127.0.0.0/8".into()];
    c.api.webhook_retry_base_ms = 50;
}

#[tokio::test]
async fn events_reach_webhooks_signed_retried_and_logged() {
    let s = TestServer::start_with(allowing).await;
    let (url, seen) = receiver().await;
    s.deploy("site", &[("/index.html", b"v1")], false).await;
    let body = json!({ "url": url, "events": ["deploy.ready", "deploy.promoted", "env.changed"], "secret": SECRET });
    let (status, hook) = s.call(Method::POST, "/api/v1/projects/site/webhooks", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    assert_eq!(hook["secret"], SECRET, "shown when made");
    let (_, list) = s.call(Method::GET, "/api/v1/projects/site/webhooks", None).await;
    assert!(list[0]["secret"].is_null(), "never again: {list}");

    // The receiver fails twice: the third attempt delivers.
    seen.lock().unwrap().fail_next = 2;
    let d = s.deploy("site", &[("/index.html", b"v2")], true).await;
    wait_for(&seen, "deploy.ready and deploy.promoted", |s| types(s).contains(&"deploy.promoted".to_owned())).await;
    let got = seen.lock().unwrap().requests.clone();
    let (headers, ready) = got.iter().find(|(_, b)| b["type"] == "deploy.ready").unwrap();
    assert_eq!(ready["version"], 1);
    assert_eq!((ready["project"].as_str(), ready["actor"].as_str()), (Some("site"), Some("admin")));
    assert_eq!(ready["data"]["deployment"], d["id"]);
    assert!(ready["seq"].as_u64().unwrap() > 0 && ready["at_ms"].as_i64().unwrap() > 0, "{ready}");
    // The signature is the generic hook's scheme over the exact body.
    let ts: i64 = headers["x-helix-timestamp"].to_str().unwrap().parse().unwrap();
    assert!(
        (ts - (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64)).abs()
            < 60
    );
    let raw = serde_json::to_vec(ready).unwrap();
    let expected = helix_server::control::webhook_signature(SECRET, ts, &raw);
    assert_eq!(headers["x-helix-signature-256"].to_str().unwrap(), expected);
    assert_eq!(headers["x-helix-event"], "deploy.ready");

    // Env changes arrive without their value; other types were not asked for.
    let (status, _) =
        s.call(Method::PUT, "/api/v1/projects/site/env/TOKEN", Some(json!({ "value": "v", "secret": true }))).await;
    assert_eq!(status, StatusCode::OK);
    wait_for(&seen, "env.changed", |s| types(s).contains(&"env.changed".to_owned())).await;
    let env = seen.lock().unwrap().requests.iter().find(|(_, b)| b["type"] == "env.changed").unwrap().1.clone();
    assert_eq!(env["data"]["name"], "TOKEN");
    assert!(!env.to_string().contains("\"v\""), "{env}");
    assert!(
        types(&seen.lock().unwrap())
            .iter()
            .all(|t| ["deploy.ready", "deploy.promoted", "env.changed"].contains(&t.as_str()))
    );

    // The delivery log: two failed attempts, then each delivered once.
    let (_, log) = s.call(Method::GET, "/api/v1/projects/site/webhooks/deliveries", None).await;
    let log = log["deliveries"].as_array().unwrap();
    assert!(log.iter().all(|d| d["state"] == "delivered"), "{log:?}");
    assert!(log.iter().map(|d| d["attempts"].as_i64().unwrap()).max() >= Some(2), "{log:?}");
    assert_eq!(log.iter().map(|d| d["attempts"].as_i64().unwrap()).sum::<i64>(), 2 + 3, "{log:?}");

    // Pending deliveries survive a restart, and go once the receiver answers.
    seen.lock().unwrap().fail_next = usize::MAX;
    s.call(Method::POST, "/api/v1/projects/site/rollback", None).await;
    let s = s.restart().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    seen.lock().unwrap().fail_next = 0;
    let (status, _) = s.call(Method::PUT, "/api/v1/projects/site/env/OTHER", Some(json!({ "value": "x" }))).await;
    assert_eq!(status, StatusCode::OK);
    wait_for(&seen, "the event after the restart", |s| {
        s.requests.iter().any(|(_, b)| b["type"] == "env.changed" && b["data"]["name"] == "OTHER")
    })
    .await;
}

#[tokio::test]
async fn webhooks_never_reach_this_machine_unless_allowed_and_bad_ones_are_refused() {
    let s = TestServer::start_with(|c| c.api.webhook_retry_base_ms = 50).await;
    let (url, seen) = receiver().await;
    s.deploy("site", &[("/index.html", b"v1")], false).await;
    for bad in ["ftp://example.com/x", "http://user:pw@example.com/x", "not a url", "http://"] {
        let (status, p) = s.call(Method::POST, "/api/v1/projects/site/webhooks", Some(json!({ "url": bad }))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {p}");
    }
    let (status, p) = s
        .call(Method::POST, "/api/v1/projects/site/webhooks", Some(json!({ "url": url, "events": ["Deploy Ready"] })))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    let localhost = url.replace("127.0.0.1", "localhost");
    for target in [url.clone(), localhost, "http://169.254.169.254/latest/meta-data/".into()] {
        let (status, p) = s.call(Method::POST, "/api/v1/projects/site/webhooks", Some(json!({ "url": target }))).await;
        assert_eq!(status, StatusCode::CREATED, "{p}");
    }
    s.deploy("site", &[("/index.html", b"v2")], true).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let (_, log) = s.call(Method::GET, "/api/v1/projects/site/webhooks/deliveries", None).await;
        let log = log["deliveries"].as_array().unwrap().clone();
        if log.len() >= 6 && log.iter().all(|d| d["attempts"].as_i64().unwrap() >= 1) {
            break log;
        }
        assert!(Instant::now() < deadline, "{log:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(log.iter().all(|d| d["state"] != "delivered"), "{log:?}");
    let errors: Vec<&str> = log.iter().map(|d| d["last_error"].as_str().unwrap_or("")).collect();
    assert!(errors.iter().any(|e| e.contains("loopback")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("metadata") || e.contains("link-local")), "{errors:?}");
    assert!(errors.iter().all(|e| e.contains("--webhook-allow")), "{errors:?}");
    assert_eq!(seen.lock().unwrap().hits, 0, "the receiver on this machine was never reached");
}

#[tokio::test]
async fn a_slow_endpoint_delays_only_its_own_deliveries() {
    let s = TestServer::start_with(allowing).await;
    let (fast, seen) = receiver().await;
    // An endpoint that takes its time answering every delivery.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async {
            tokio::time::sleep(Duration::from_secs(8)).await;
            StatusCode::NO_CONTENT
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    s.deploy("busy", &[("/index.html", b"v0")], true).await;
    for url in [&slow, &fast] {
        let (status, b) = s
            .call(
                Method::POST,
                "/api/v1/projects/busy/webhooks",
                Some(json!({ "url": url, "events": ["env.changed"] })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{b}");
    }
    // Many events at once: the fast endpoint has them all long before
    // the slow one has answered its first.
    let started = Instant::now();
    for i in 0..20 {
        let (status, _) =
            s.call(Method::PUT, &format!("/api/v1/projects/busy/env/V{i}"), Some(json!({ "value": "x" }))).await;
        assert_eq!(status, StatusCode::OK);
    }
    let names = |s: &Seen| {
        s.requests.iter().map(|(_, b)| b["data"]["name"].to_string()).collect::<std::collections::HashSet<_>>()
    };
    wait_for(&seen, "20 env.changed", |s| names(s).len() == 20).await;
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(seen.lock().unwrap().requests.len(), 20, "each delivered once");
}
