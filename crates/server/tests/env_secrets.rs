//! Environment variables and secrets, on the real server: functions see
//! their deployment's environment's variables (a secret decrypted only
//! into the instance), nothing at rest holds a secret's plaintext, the
//! master key rotates under a running server and survives a restart, and
//! bad input is refused whole.

use helix_testkit::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;

const SECRET: &str = "sk_live_7d1f0c9e-plaintext-never-at-rest";

const FUNCTION: &[u8] = b"export default function handler(req, res) {
  res.json({ plain: process.env.PLAIN ?? null, secret: process.env.API_KEY ?? null,
             prod: process.env.PROD_ONLY ?? null, branch: process.env.BRANCH_ONE ?? null });
}
";

async fn set(s: &TestServer, project: &str, name: &str, body: Value) -> (StatusCode, Value) {
    s.call(Method::PUT, &format!("/api/v1/projects/{project}/env/{name}"), Some(body)).await
}

async fn seen(s: &TestServer, host: &str) -> Value {
    let resp = s.get_edge(host, "/api/env").await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

/// Every file under `dir`, as bytes, that holds `needle`.
fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

async fn variables_reach_functions(database_url: Option<String>) {
    let s = TestServer::start_with(|c| c.database_url = database_url.clone()).await;
    // Set before the first deploy: the project is made for them.
    assert_eq!(set(&s, "vars", "PLAIN", json!({ "value": "hello" })).await.0, StatusCode::OK);
    let (status, body) = set(&s, "vars", "API_KEY", json!({ "value": SECRET, "secret": true })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.as_array().unwrap().iter().all(|v| v["value"].is_null() && v["secret"] == true), "{body}");
    set(&s, "vars", "PROD_ONLY", json!({ "value": "p", "environments": ["production"] })).await;
    set(&s, "vars", "BRANCH_ONE", json!({ "value": "b", "environments": ["preview"], "branch": "feature" })).await;

    let (_, list) = s.call(Method::GET, "/api/v1/projects/vars/env", None).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3 + 3 + 1 + 1, "{list:?}");
    assert!(!serde_json::to_string(list).unwrap().contains(SECRET), "listing never shows a secret");

    let (status, d) = s.deploy_functions("vars", &[("/index.html", b"home")], &[], &[("api/env.js", FUNCTION)]).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    let prod = seen(&s, "vars.localhost").await;
    assert_eq!(prod, json!({ "plain": "hello", "secret": SECRET, "prod": "p", "branch": null }));
    let (status, preview) =
        s.deploy_functions_beside("vars", &[("/index.html", b"home")], &[("api/env.js", FUNCTION)]).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    let host = format!("{}--vars.localhost", preview["id"].as_str().unwrap());
    let got = seen(&s, &host).await;
    assert_eq!(got, json!({ "plain": "hello", "secret": SECRET, "prod": null, "branch": null }), "a preview");

    // Nothing at rest holds the plaintext: not the data directory (SQLite
    // and its log included), not the Postgres rows.
    assert_eq!(files_holding(s.data_dir.path(), SECRET.as_bytes()), Vec::<String>::new());
    if let Some(url) = &database_url {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        for table in ["env_vars", "project_keys", "audit_log", "outbox"] {
            let rows: Vec<(String,)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT CAST({table} AS TEXT) FROM {table}")))
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
            assert!(rows.iter().all(|(r,)| !r.contains(SECRET)), "{table} holds the secret");
        }
    }
    // Each decryption is in the audit log, naming who read what.
    let (_, log) = s.call(Method::GET, "/api/v1/audit?project=vars", None).await;
    let reads: Vec<&Value> =
        log["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "secret.read").collect();
    assert!(!reads.is_empty(), "{log}");
    assert_eq!(reads[0]["detail"]["names"], json!(["API_KEY"]));
    assert!(reads[0]["detail"]["for"].as_str().unwrap().starts_with("function api/env"), "{}", reads[0]);

    // Rotation under a running server, then a restart: still readable.
    let (status, rotated) = s.call(Method::POST, "/api/v1/keys/rotate", None).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["project_keys"], 1);
    set(&s, "vars", "PLAIN", json!({ "value": "after rotation" })).await;
    let s = s.restart().await;
    let (status, d) = s.deploy_functions("vars", &[("/index.html", b"again")], &[], &[("api/env.js", FUNCTION)]).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    let prod = seen(&s, "vars.localhost").await;
    assert_eq!((prod["plain"].as_str(), prod["secret"].as_str()), (Some("after rotation"), Some(SECRET)));
    if database_url.is_none() {
        assert!(!s.data_dir.path().join("secret.key").exists(), "the first key is retired");
    }
    assert_eq!(files_holding(s.data_dir.path(), SECRET.as_bytes()), Vec::<String>::new());
}

#[tokio::test]
async fn variables_and_secrets_reach_functions_on_sqlite() {
    variables_reach_functions(None).await;
}

#[tokio::test]
async fn variables_and_secrets_reach_functions_on_postgres() {
    let Some(url) = helix_testkit::fresh_postgres("env_secrets").await else { return };
    variables_reach_functions(Some(url)).await;
}

#[tokio::test]
async fn bad_variables_are_refused_whole_and_named() {
    let s = TestServer::start().await;
    s.deploy("site", &[("/index.html", b"x")], true).await;
    set(&s, "site", "KEEP", json!({ "value": "1" })).await;
    let before = s.call(Method::GET, "/api/v1/projects/site/env", None).await.1;
    let cases = [
        ("1BAD", json!({ "value": "x" }), "variable name"),
        ("HELIX_TOKEN", json!({ "value": "x" }), "platform"),
        ("OK", json!({ "value": "x", "environments": ["Prod!"] }), "environment"),
        ("OK", json!({ "value": "x", "branch": "a..b" }), "branch"),
        ("OK", json!({ "value": "x".repeat(70_000) }), "at most"),
        ("OK", json!({ "value": "x", "sneaky": true }), "unknown field"),
        ("OK", json!({ "value": 5 }), "invalid type"),
    ];
    for (name, body, says) in cases {
        let (status, problem) = set(&s, "site", name, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains(says), "{name}: {problem}");
    }
    // A .env with one bad line imports nothing.
    let dotenv = json!({ "dotenv": "A=1\nB=2\nthis is not a pair\nC=3\n" });
    let (status, problem) = s.call(Method::POST, "/api/v1/projects/site/env/import", Some(dotenv)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(problem["detail"].as_str().unwrap().contains("line 3"), "{problem}");
    assert_eq!(s.call(Method::GET, "/api/v1/projects/site/env", None).await.1, before, "nothing changed");
    // Removing what is not there is a 404; another org's project is too.
    let (status, _) = s.call(Method::DELETE, "/api/v1/projects/site/env/NOPE", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A good import sets them all, and pull gives plain values only.
    let dotenv = json!({ "dotenv": "A=1\nexport B=\"two words\"\n", "environments": ["development"] });
    let (status, out) = s.call(Method::POST, "/api/v1/projects/site/env/import", Some(dotenv)).await;
    assert_eq!((status, out["imported"].clone()), (StatusCode::OK, json!(["A", "B"])));
    set(&s, "site", "S", json!({ "value": "hidden", "secret": true, "environments": ["development"] })).await;
    let (_, pulled) = s.call(Method::GET, "/api/v1/projects/site/env/pull?environment=development", None).await;
    assert_eq!(pulled["values"], json!({ "A": "1", "B": "two words", "KEEP": "1" }));
    assert_eq!(pulled["secrets"], json!(["S"]));
}
