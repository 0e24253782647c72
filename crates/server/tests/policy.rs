//! Policy at every decision point, on the real server: each denies when
//! the organisation's Rego module says so (403, the module's message,
//! audited), the shipped example policies decide as documented, and a bad
//! or runaway module is refused or fails closed.

use helix_testkit::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn set_policy(s: &TestServer, token: &str, source: &str) -> (StatusCode, Value) {
    s.call_as(token, Method::PUT, "/api/v1/policy", Some(json!({ "source": source }))).await
}

/// A module denying exactly `action`.
fn denying(action: &str) -> String {
    format!(
        "package helix\n\ndeny contains msg if {{\n\tinput.action == \"{action}\"\n\tmsg := sprintf(\"no %v here\", [input.action])\n}}\n"
    )
}

const ENV_FUNCTION: &[u8] = b"export default (req, res) => res.json({ key: process.env.KEY ?? null });\n";

#[tokio::test]
async fn every_decision_point_denies_when_the_policy_says_so() {
    let s = TestServer::start().await;
    // An org owner (not the server admin: its policy changes are exempt).
    let owner = s.call(Method::POST, "/api/v1/members", Some(json!({ "user": "olive", "role": "owner" }))).await;
    assert_eq!(owner.0, StatusCode::OK);
    let made = s.call(Method::POST, "/api/v1/tokens", Some(json!({ "name": "o", "user": "olive" }))).await.1;
    let olive = made["token"].as_str().unwrap().to_owned();
    let first = s.deploy("site", &[("/index.html", b"v1")], true).await;
    let second = s.deploy("site", &[("/index.html", b"v2")], false).await;
    let (first, second) = (first["id"].as_str().unwrap(), second["id"].as_str().unwrap());
    let files = json!({ "files": { "/index.html": helix_core::Digest::of(b"v3").to_hex() } });

    let cases: Vec<(&str, Method, String, Option<Value>)> = vec![
        ("deploy", Method::POST, "/api/v1/projects/site/deployments".into(), Some(files)),
        ("promote", Method::POST, format!("/api/v1/deployments/{second}/promote"), None),
        ("rollback", Method::POST, "/api/v1/projects/site/rollback".into(), Some(json!({ "to": first }))),
        (
            "split.change",
            Method::PUT,
            "/api/v1/projects/site/split".into(),
            Some(json!({ "weights": { first: 50, second: 50 } })),
        ),
        ("env.write", Method::PUT, "/api/v1/projects/site/env/KEY".into(), Some(json!({ "value": "v" }))),
        ("env.read", Method::GET, "/api/v1/projects/site/env".into(), None),
        ("token.create", Method::POST, "/api/v1/tokens".into(), Some(json!({ "name": "t" }))),
        ("member.change", Method::POST, "/api/v1/members".into(), Some(json!({ "user": "x", "role": "viewer" }))),
        ("policy.change", Method::DELETE, "/api/v1/policy".into(), None),
    ];
    for (action, method, path, body) in cases {
        let (status, p) = set_policy(&s, &olive, &denying(action)).await;
        assert_eq!(status, StatusCode::OK, "{action}: {p}");
        let (status, p) = s.call_as(&olive, method.clone(), &path, body.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{action}: {p}");
        assert_eq!(p["detail"], format!("denied by policy: no {action} here"), "{action}");
        assert_eq!(p["type"], "https://helixstack.dev/problems/policy-denied");
        // Without the policy, the same request passes.
        let (status, _) = s.call(Method::DELETE, "/api/v1/policy", None).await;
        assert_eq!(status, StatusCode::OK, "the server admin may always change the policy");
        let (status, p) = s.call_as(&olive, method, &path, body).await;
        assert!(status.is_success(), "{action} without a policy: {status} {p}");
    }

    // secret.read: a function instance may not decrypt; it answers 502,
    // and the denial is audited.
    let set = json!({ "value": "hush", "secret": true });
    assert_eq!(s.call(Method::PUT, "/api/v1/projects/fn/env/KEY", Some(set)).await.0, StatusCode::OK);
    let (status, d) = s.deploy_functions("fn", &[("/index.html", b"x")], &[], &[("api/env.js", ENV_FUNCTION)]).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(set_policy(&s, &olive, &denying("secret.read")).await.0, StatusCode::OK);
    let resp = s.get_edge("fn.localhost", "/api/env").await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let (_, log) = s.call(Method::GET, "/api/v1/audit", None).await;
    let denials: Vec<&Value> =
        log["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "policy.deny").collect();
    let decisions: Vec<&str> = denials.iter().map(|e| e["detail"]["decision"].as_str().unwrap()).collect();
    for action in ["deploy", "promote", "env.write", "token.create", "member.change", "policy.change", "secret.read"] {
        assert!(decisions.contains(&action), "{action} denial not audited: {decisions:?}");
    }
    assert!(denials.iter().all(|e| e["outcome"] == "denied"));
    s.call(Method::DELETE, "/api/v1/policy", None).await;
    let resp = s.get_edge("fn.localhost", "/api/env").await;
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({ "key": "hush" }),
        "allowed again, the next instance reads it"
    );
}

#[tokio::test]
async fn the_example_policies_decide_as_documented() {
    let s = TestServer::start().await;
    let test = |source: &'static str, input: Value| {
        let s = &s;
        async move {
            let (status, v) =
                s.call(Method::POST, "/api/v1/policy/test", Some(json!({ "source": source, "input": input }))).await;
            assert_eq!(status, StatusCode::OK, "{v}");
            (v["allowed"].as_bool().unwrap(), v["messages"].clone())
        }
    };
    let main_only = include_str!("../../../docs/policies/production-from-main.rego");
    let deploy = |branch: Value, env: &str| json!({ "action": "deploy", "environment": env, "deployment": { "id": "d", "branch": branch } });
    assert!(test(main_only, deploy(json!("main"), "production")).await.0);
    let (allowed, why) = test(main_only, deploy(json!("feature"), "production")).await;
    assert!(!allowed && why[0].as_str().unwrap().contains("feature"), "{why}");
    assert!(!test(main_only, deploy(Value::Null, "production")).await.0, "no branch: refused");
    assert!(test(main_only, deploy(json!("feature"), "preview")).await.0, "previews from anywhere");

    let hours = include_str!("../../../docs/policies/business-hours.rego");
    let promote = |weekday: &str, hour: i64| json!({ "action": "promote", "time": { "weekday": weekday, "hour": hour, "minute": 0, "unix_ms": 0 } });
    assert!(test(hours, promote("Tuesday", 10)).await.0);
    assert!(!test(hours, promote("Tuesday", 19)).await.0);
    assert!(!test(hours, promote("Saturday", 10)).await.0);
    assert!(test(hours, json!({ "action": "deploy", "time": { "weekday": "Sunday", "hour": 3 } })).await.0);

    let secrets = include_str!("../../../docs/policies/previews-no-production-secrets.rego");
    let read = |env: &str, production: bool| {
        json!({ "action": "secret.read", "environment": env, "actor": { "kind": "build", "name": "build 1" },
                "deployment": { "production": production }, "request": { "names": ["KEY"] } })
    };
    assert!(test(secrets, read("production", true)).await.0);
    assert!(!test(secrets, read("production", false)).await.0);
    assert!(test(secrets, read("preview", false)).await.0);

    let viewers = include_str!("../../../docs/policies/viewers-no-env.rego");
    let as_role = |action: &str, role: &str| json!({ "action": action, "actor": { "role": role } });
    assert!(!test(viewers, as_role("env.read", "viewer")).await.0);
    assert!(test(viewers, as_role("env.read", "developer")).await.0);
    assert!(test(viewers, as_role("deploy", "viewer")).await.0, "logs and the rest stay readable");

    // End to end: production from main only.
    assert_eq!(set_policy(&s, s.token(), main_only).await.0, StatusCode::OK);
    let files = json!({ "/index.html": helix_core::Digest::of(b"x").to_hex() });
    let body = |branch: Option<&str>| json!({ "files": files, "production": true, "branch": branch });
    let (status, p) = s.call(Method::POST, "/api/v1/projects/app/deployments", Some(body(None))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{p}");
    let (status, p) = s.call(Method::POST, "/api/v1/projects/app/deployments", Some(body(Some("main")))).await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    let (status, p) = s.call(Method::POST, "/api/v1/projects/app/deployments", Some(json!({ "files": files }))).await;
    assert_eq!(status, StatusCode::CREATED, "a preview from anywhere: {p}");
}

#[tokio::test]
async fn bad_and_runaway_policies_are_refused_or_fail_closed() {
    let s = TestServer::start().await;
    let (status, p) = set_policy(&s, s.token(), "package helix\n\ndeny contains msg if {\n\tinput.x ==\n}\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("does not compile") && detail.contains("policy.rego:"), "names the line: {detail}");
    let (status, p) = set_policy(&s, s.token(), "package other\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(p["detail"].as_str().unwrap().contains("package helix"), "{p}");
    assert_eq!(s.call(Method::GET, "/api/v1/policy", None).await.0, StatusCode::NOT_FOUND, "nothing was set");

    // A module that runs long on every input is refused when set; the
    // engine's builder of huge values is not available at all.
    let always = "package helix\n\nxs := [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]\n\ndeny contains msg if {\n\tn := count([1 | some a in xs; some b in xs; some c in xs; some d in xs; some e in xs; a < b])\n\tmsg := sprintf(\"%v\", [n])\n}\n";
    let (status, p) = set_policy(&s, s.token(), always).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("runs longer than 50 ms"), "{p}");
    let (status, p) = set_policy(&s, s.token(), "package helix\nx := count(numbers.range(1, 1000000000))\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(p["detail"].as_str().unwrap().contains("numbers.range"), "{p}");
    // One that runs long only on some inputs: that decision stops at the
    // limit and denies, and so does every later one, until it is replaced.
    let runaway = "package helix\n\ndeny contains msg if {\n\txs := split(input.request.name, \"\")\n\tn := count([1 | some a in xs; some b in xs; some c in xs; some d in xs; a == d])\n\tmsg := sprintf(\"%v\", [n])\n}\n";
    assert_eq!(set_policy(&s, s.token(), runaway).await.0, StatusCode::OK);
    let long_name = json!({ "name": "n".repeat(100) });
    let started = std::time::Instant::now();
    let (status, p) = s.call(Method::POST, "/api/v1/tokens", Some(long_name.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("ran past its 50 ms limit"), "{p}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "bounded: {:?}", started.elapsed());
    let (status, p) = s.call(Method::POST, "/api/v1/tokens", Some(json!({ "name": "short" }))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "tripped: {p}");
    let (_, log) = s.call(Method::GET, "/api/v1/audit", None).await;
    assert!(log["entries"].as_array().unwrap().iter().any(|e| e["action"] == "policy.deny"), "audited");
    // And `helix policy show` gives back what is in force.
    let (status, shown) = s.call(Method::GET, "/api/v1/policy", None).await;
    assert_eq!((status, shown["source"].as_str()), (StatusCode::OK, Some(runaway)));
    assert_eq!(shown["version"], 1);
}

#[tokio::test]
async fn changing_production_schedules_is_a_cron_change_decision() {
    let s = TestServer::start_with(|c| c.build_workers = 0).await;
    let (status, b) = set_policy(&s, s.token(), &denying("cron.change")).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    let index: &[(&str, &[u8])] = &[("/index.html", b"tick")];
    let crons: &[(&str, &[u8])] = &[("vercel.json", br#"{ "crons": [{ "path": "/tick", "schedule": "0 5 * * *" }] }"#)];

    // Straight to production with a schedule: denied, nothing served.
    let (status, denied) = s.deploy_with("tick", index, crons, true).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{denied}");
    assert_eq!(denied["type"], "https://helixstack.dev/problems/policy-denied");
    assert!(denied["detail"].as_str().unwrap().contains("no cron.change here"), "{denied}");
    assert_eq!(s.get_edge("tick.localhost", "/").await.status(), StatusCode::NOT_FOUND);

    // Production without schedules changes none; a preview with them neither.
    let (status, plain) = s.deploy_with("tick", index, &[], true).await;
    assert_eq!(status, StatusCode::OK, "{plain}");
    let (status, scheduled) = s.deploy_with("tick", &[("/index.html", b"tick v2")], crons, false).await;
    assert_eq!(status, StatusCode::OK, "{scheduled}");
    let scheduled = scheduled["id"].as_str().unwrap().to_owned();

    // Promoting it would start the schedule: denied; allowed once the policy goes.
    let promote = format!("/api/v1/deployments/{scheduled}/promote");
    let (status, body) = s.call(Method::POST, &promote, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    s.call(Method::DELETE, "/api/v1/policy", None).await;
    let (status, body) = s.call(Method::POST, &promote, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, listed) = s.call(Method::GET, "/api/v1/projects/tick/crons", None).await;
    assert_eq!(listed["crons"][0]["schedule"], "0 5 * * *", "{listed}");

    // Rolling back would stop it: denied again under the policy.
    set_policy(&s, s.token(), &denying("cron.change")).await;
    let (status, body) = s.call(Method::POST, "/api/v1/projects/tick/rollback", Some(json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, log) = s.call(Method::GET, "/api/v1/audit", None).await;
    let denials =
        log["entries"].as_array().unwrap().iter().filter(|e| e["detail"]["decision"] == "cron.change").count();
    assert_eq!(denials, 3, "{log}");
    assert_eq!(s.get_edge("tick.localhost", "/").await.text().await.unwrap(), "tick v2", "production is unchanged");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_on_one_postgres_decide_by_the_same_policy_at_once() {
    let Some(url) = helix_testkit::fresh_postgres("policy_two_servers").await else {
        eprintln!("skipped: HELIX_TEST_DATABASE_URL is not set");
        return;
    };
    let a = TestServer::start_with(|c| {
        c.database_url = Some(url.clone());
        c.build_workers = 0;
    })
    .await;
    // The second shares the first one's blobs, as a fleet shares its store.
    let b = TestServer::start_with(|c| {
        c.database_url = Some(url.clone());
        c.build_workers = 0;
        std::fs::create_dir_all(&c.data_dir).unwrap();
        std::os::unix::fs::symlink(a.data_dir.path().join("blobs"), c.data_dir.join("blobs")).unwrap();
    })
    .await;
    a.deploy("shared", &[("/index.html", b"v1")], true).await;
    let v2 = a.deploy("shared", &[("/index.html", b"v2")], false).await["id"].as_str().unwrap().to_owned();
    let promote = format!("/api/v1/deployments/{v2}/promote");

    // b has decided under no policy; a sets one: b obeys it.
    let env = json!({ "value": "1" });
    let (status, body) = b.call(Method::PUT, "/api/v1/projects/shared/env/FLAG", Some(env)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = set_policy(&a, a.token(), &denying("promote")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = b.call(Method::POST, &promote, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // b replaces it with a policy that allows; a obeys at once.
    let (status, body) = set_policy(&b, b.token(), &denying("rollback")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = a.call(Method::POST, &promote, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = a.call(Method::POST, "/api/v1/projects/shared/rollback", Some(json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}
