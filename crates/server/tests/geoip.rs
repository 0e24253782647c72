//! Netlify `Country=` rules with a MaxMind database: the visitor's country
//! from their address, when no cookie or trusted header says it; a file
//! that is not a database stops the server with a clear error.

use helix_testkit::TestServer;
use reqwest::Method;

#[tokio::test]
async fn country_rules_use_the_maxmind_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("countries.mmdb");
    std::fs::write(
        &db,
        helix_testkit::mmdb::country_db(&[([127, 0, 0, 0].into(), 8, "DE"), ([10, 0, 0, 0].into(), 8, "FR")]),
    )
    .unwrap();
    // The database itself, through the edge's reader.
    let reader = helix_edge::geoip::GeoIp::open(&db).unwrap();
    assert_eq!(reader.country([127, 0, 0, 1].into()).as_deref(), Some("de"));
    assert_eq!(reader.country([10, 1, 2, 3].into()).as_deref(), Some("fr"));
    assert_eq!(reader.country([192, 168, 0, 1].into()), None);

    let s = TestServer::start_with(|c| c.edge.geoip_db = Some(db.clone())).await;
    let d = s
        .deploy(
            "geo",
            &[
                ("/_redirects", b"/  /de/  302!  Country=de\n/  /fr/  302!  Country=fr\n".as_slice()),
                ("/index.html", b"global"),
            ],
            true,
        )
        .await;
    assert_eq!(d["routes"]["diagnostics"], serde_json::json!([]));
    s.wait_for_site("geo.localhost").await;
    // The test client connects from 127.0.0.1: Germany, by the database.
    let resp = s.edge(Method::GET, "geo.localhost", "/").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    assert_eq!(resp.headers()["location"], "/de/");
    // The nf_country cookie overrides the database.
    let resp = s.edge(Method::GET, "geo.localhost", "/").header("cookie", "nf_country=fr").send().await.unwrap();
    assert_eq!(resp.headers()["location"], "/fr/");
    let resp = s.edge(Method::GET, "geo.localhost", "/").header("cookie", "nf_country=us").send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "global");
}

#[tokio::test]
async fn a_bad_database_stops_the_server_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.mmdb");
    std::fs::write(&bogus, b"not a database").unwrap();
    let mut config = helix_testkit::test_config(dir.path());
    config.edge.geoip_db = Some(bogus);
    let err = helix_server::start(config).await.err().expect("start refuses a bad database");
    assert!(format!("{err:#}").contains("is not a readable MaxMind database"), "{err:#}");
}
