//! Traffic splits: weighted, sticky per visitor, pinnable, atomic to change,
//! validated, and kept across a restart.

use helix_testkit::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn version(s: &TestServer, n: u32) -> String {
    let body = format!("version {n}");
    let d = s.deploy("ab", &[("/index.html", body.as_bytes())], n == 1).await;
    d["id"].as_str().unwrap().to_owned()
}

/// (served version, Set-Cookie) of one request.
async fn visit(s: &TestServer, cookie: Option<&str>, pin: Option<&str>) -> (String, Option<String>) {
    let mut req = s.edge(Method::GET, "ab.localhost", "/");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if let Some(p) = pin {
        req = req.header("x-helix-split", p);
    }
    let resp = req.send().await.unwrap();
    let set = resp.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_owned());
    (resp.text().await.unwrap(), set)
}

async fn wait_split(s: &TestServer, want_set_cookie: bool) {
    for _ in 0..200 {
        if visit(s, None, None).await.1.is_some() == want_set_cookie {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the split never changed on the edge");
}

#[tokio::test]
async fn splits_are_weighted_sticky_and_pinnable() {
    let s = TestServer::start().await;
    let v1 = version(&s, 1).await;
    let v2 = version(&s, 2).await;
    s.wait_for_host("ab.localhost", |b| b == "version 1").await;

    let (status, split) = s
        .call(Method::PUT, "/api/v1/projects/ab/split", Some(json!({"weights": {"production": 70, v2.clone(): 30}})))
        .await;
    assert_eq!(status, StatusCode::OK, "{split}");
    assert_eq!(split["weights"][&v1], 70);
    wait_split(&s, true).await;

    // Fresh visitors are drawn by weight and told which variant they got.
    let mut counts = [0u32; 2];
    for _ in 0..400 {
        let (body, cookie) = visit(&s, None, None).await;
        let cookie = cookie.expect("a fresh visitor gets the split cookie");
        let id = if body == "version 1" { &v1 } else { &v2 };
        assert!(cookie.starts_with(&format!("helix-split={id};")), "{cookie} for {body}");
        counts[usize::from(body == "version 2")] += 1;
    }
    assert!((220..=340).contains(&counts[0]), "70% expected, got {counts:?}");

    // A returning visitor stays on their variant; the header pins one.
    for _ in 0..20 {
        assert_eq!(visit(&s, Some(&format!("helix-split={v2}")), None).await, ("version 2".into(), None));
        assert_eq!(visit(&s, Some(&format!("other=1; helix-split={v1}")), None).await.0, "version 1");
        assert_eq!(visit(&s, Some(&format!("helix-split={v1}")), Some(&v2)).await.0, "version 2");
    }
    // A stale cookie (a deployment no longer in the split) draws again.
    assert!(visit(&s, Some("helix-split=01jzzzzzzzzzzzzzzzzzzzzzzz"), None).await.1.is_some());
    // Deployment URLs are never split.
    let (_, set) = {
        let resp = s.get_edge(&format!("{v2}--ab.localhost"), "/").await;
        let set = resp.headers().get("set-cookie").cloned();
        (resp.text().await.unwrap(), set)
    };
    assert!(set.is_none());

    // The split survives a restart.
    let s = s.restart().await;
    wait_split(&s, true).await;
    assert_eq!(visit(&s, None, Some(&v2)).await.0, "version 2");

    // Ending it serves production alone again.
    let (status, _) = s.call(Method::DELETE, "/api/v1/projects/ab/split", None).await;
    assert_eq!(status, StatusCode::OK);
    wait_split(&s, false).await;
    for _ in 0..20 {
        assert_eq!(visit(&s, Some(&format!("helix-split={v2}")), None).await, ("version 1".into(), None));
    }
}

#[tokio::test]
async fn bad_splits_are_refused_and_change_nothing() {
    let s = TestServer::start().await;
    let v1 = version(&s, 1).await;
    let other = s.deploy("elsewhere", &[("/index.html", b"x")], true).await["id"].as_str().unwrap().to_owned();
    for (body, want) in [
        (json!({"weights": {v1.clone(): 60}}), StatusCode::BAD_REQUEST),
        (json!({"weights": {v1.clone(): 150, "production": 0}}), StatusCode::BAD_REQUEST),
        (json!({"weights": {}}), StatusCode::BAD_REQUEST),
        // Found by schemathesis: weights whose sum overflows a u32.
        (json!({"weights": {"": 2147483648u32, "0": 1, "1": 2147483647}}), StatusCode::BAD_REQUEST),
        (json!({"weights": {v1.clone(): 50, "production": 50}}), StatusCode::BAD_REQUEST),
        (json!({"weights": {v1.clone(): 50, "01jzzzzzzzzzzzzzzzzzzzzzzz": 50}}), StatusCode::NOT_FOUND),
        (json!({"weights": {v1.clone(): 50, other.clone(): 50}}), StatusCode::CONFLICT),
        (json!({"split": 1}), StatusCode::BAD_REQUEST),
    ] {
        let (status, problem) = s.call(Method::PUT, "/api/v1/projects/ab/split", Some(body.clone())).await;
        assert_eq!(status, want, "{body} → {problem}");
    }
    let (status, _) = s.call(Method::PUT, "/api/v1/projects/nope/split", Some(json!({"weights": {v1: 100}}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, split) = s.call(Method::GET, "/api/v1/projects/ab/split", None).await;
    assert_eq!(split["weights"], json!({}));
    assert!(visit(&s, None, None).await.1.is_none());
}
