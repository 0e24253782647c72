//! The bundler for real (esbuild in the sandbox): a burst of deploys
//! bundles a few at a time, not all at once.

use std::collections::BTreeMap;

use bytes::Bytes;
use helix_runtime::bundle;

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_bundles_runs_one_per_core_at_a_time() {
    if !bundle::available() {
        eprintln!("skipped: esbuild is not installed (cargo xtask setup installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sources: BTreeMap<String, Bytes> =
        [("api/a.ts".to_owned(), Bytes::from_static(b"export default (req: any, res: any) => res.end('a')"))].into();
    let entries = vec!["api/a.ts".to_owned()];
    let runs = (0..6).map(|i| {
        let (work, cache) = (dir.path().join(format!("work{i}")), dir.path().join(format!("cache{i}")));
        let (sources, entries) = (sources.clone(), entries.clone());
        tokio::spawn(async move { bundle::bundle(&work, &cache, &sources, &entries).await })
    });
    for run in futures_util::future::join_all(runs).await {
        let out = run.unwrap().expect("bundles");
        assert_eq!(out[0].0, ".helix/bundles/api/a.mjs");
    }
    let cores = std::thread::available_parallelism().unwrap().get();
    let most = bundle::most_at_once();
    assert!((1..=cores).contains(&most), "{most} bundles ran at once on {cores} cores");
}
