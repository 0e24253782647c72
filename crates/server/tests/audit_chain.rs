//! The audit log's hash chain catches an edited, a deleted, a reordered and
//! a cut-off entry, and says where — on SQLite and on Postgres, through the
//! API a user's `helix audit verify` calls.

use helix_testkit::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::Connection;

/// Runs `sql` against the server's own database, as an intruder with
/// database access would.
async fn tamper(url: &str, sql: &str) {
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut c).await.unwrap();
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut c).await.unwrap();
    }
}

async fn first_break(s: &TestServer) -> Option<(u64, String)> {
    let (status, report) = s.call(Method::GET, "/api/v1/audit/verify", None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let b = &report["first_break"];
    assert_eq!(report["intact"], b.is_null(), "{report}");
    b.is_object().then(|| (b["seq"].as_u64().unwrap(), b["why"].as_str().unwrap().to_owned()))
}

async fn catches_tampering(database_url: Option<String>) {
    let s = TestServer::start_with(|c| c.database_url = database_url.clone()).await;
    let url = database_url.unwrap_or_else(|| format!("sqlite://{}", s.data_dir.path().join("helix.db").display()));
    // 1: the admin token; then a deploy (2, 3), members (4, 5), a promote.
    s.deploy("site", &[("/index.html", b"v1")], true).await;
    for user in ["ann", "ben"] {
        let (status, _) =
            s.call(Method::POST, "/api/v1/members", Some(json!({ "user": user, "role": "viewer" }))).await;
        assert_eq!(status, StatusCode::OK);
    }
    let second = s.deploy("site", &[("/index.html", b"v2")], false).await;
    let id = second["id"].as_str().unwrap();
    let (status, _) = s.call(Method::POST, &format!("/api/v1/deployments/{id}/promote"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first_break(&s).await, None, "untouched, it verifies");

    // Edited: entry 4 now claims another user.
    tamper(&url, "UPDATE audit_log SET target = 'mallory' WHERE seq = 4").await;
    let (seq, why) = first_break(&s).await.unwrap();
    assert_eq!(seq, 4, "{why}");
    assert!(why.contains("altered"), "{why}");
    tamper(&url, "UPDATE audit_log SET target = 'ann' WHERE seq = 4").await;
    assert_eq!(first_break(&s).await, None, "restored, it verifies again");

    // Reordered: entries 4 and 5 swap places (their numbers with them).
    tamper(
        &url,
        "UPDATE audit_log SET seq = -4 WHERE seq = 4; UPDATE audit_log SET seq = 4 WHERE seq = 5; \
         UPDATE audit_log SET seq = 5 WHERE seq = -4",
    )
    .await;
    let (seq, why) = first_break(&s).await.unwrap();
    assert_eq!(seq, 4, "{why}");
    tamper(
        &url,
        "UPDATE audit_log SET seq = -4 WHERE seq = 4; UPDATE audit_log SET seq = 4 WHERE seq = 5; \
         UPDATE audit_log SET seq = 5 WHERE seq = -4",
    )
    .await;
    assert_eq!(first_break(&s).await, None);

    // Deleted from the middle, and cut off the end.
    tamper(&url, "DELETE FROM audit_log WHERE seq = 3").await;
    let (seq, why) = first_break(&s).await.unwrap();
    assert_eq!(seq, 3, "{why}");
    assert!(why.contains("missing"), "{why}");
    let s2 = TestServer::start_with(|c| c.database_url = None).await;
    s2.deploy("x", &[("/index.html", b"x")], true).await;
    let url2 = format!("sqlite://{}", s2.data_dir.path().join("helix.db").display());
    tamper(&url2, "DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)").await;
    let (seq, why) = first_break(&s2).await.unwrap();
    assert!(why.contains("missing from the end"), "{seq}: {why}");
}

#[tokio::test]
async fn the_chain_catches_edits_reorders_and_deletions_on_sqlite() {
    catches_tampering(None).await;
}

#[tokio::test]
async fn the_chain_catches_edits_reorders_and_deletions_on_postgres() {
    let Some(url) = helix_testkit::fresh_postgres("audit_chain").await else { return };
    catches_tampering(Some(url)).await;
}
