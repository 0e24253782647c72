//! Helpers for the scale and latency benchmarks: populating a server with
//! many tiny deployments through the real API, probing a host at a fixed
//! rate, and timing promotes with what the edge's acknowledgement adds.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use helix_client::Api;
use helix_core::Digest;
use helix_core::api::{CreateDeployment, CreatedDeployment, Deployment};
use serde_json::json;

pub(crate) fn api(url: &str, token_file: &std::path::Path) -> anyhow::Result<Api> {
    let token = std::fs::read_to_string(token_file).context("reading the token")?.trim().to_owned();
    Api::new(url, Some(token))
}

/// One tiny deployment of `project` with `body` as its index page.
pub(crate) async fn deploy(api: &Api, project: &str, body: &str, production: bool) -> anyhow::Result<Deployment> {
    let digest = Digest::of(body.as_bytes()).to_hex();
    let request = CreateDeployment {
        files: [("/index.html".to_owned(), digest.clone())].into(),
        production,
        config: Default::default(),
        compat: None,
        strict: false,
        alias: None,
        functions: Default::default(),
        context: None,
        branch: None,
    };
    let created: CreatedDeployment = api.post(&format!("/api/v1/projects/{project}/deployments"), &request).await?;
    if !created.required.is_empty() {
        let path = format!("/api/v1/deployments/{}/blobs/{digest}", created.id);
        api.put_bytes(&path, bytes::Bytes::from(body.to_owned())).await?;
    }
    api.post(&format!("/api/v1/deployments/{}/finalize", created.id), &json!({})).await
}

#[derive(clap::Args)]
pub struct PopulateArgs {
    #[arg(long)]
    api: String,
    #[arg(long)]
    token_file: std::path::PathBuf,
    /// Deployments in all.
    #[arg(long, default_value_t = 100_000)]
    deployments: usize,
    /// Spread over this many projects; each one's last is production.
    #[arg(long, default_value_t = 1_000)]
    projects: usize,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

/// Makes the deployments; prints `{"deployments", "seconds"}`.
pub async fn populate(args: PopulateArgs) -> anyhow::Result<()> {
    let api = api(&args.api, &args.token_file)?;
    let started = Instant::now();
    let per_project = args.deployments.div_ceil(args.projects);
    let made = futures_util::stream::iter(0..args.deployments)
        .map(|i| {
            let api = api.clone();
            async move {
                let (project, n) = (i % args.projects, i / args.projects);
                let production = n + 1 == per_project;
                deploy(&api, &format!("p{project}"), &format!("project {project}"), production).await
            }
        })
        .buffer_unordered(args.concurrency)
        .fold(0usize, |count, done| async move {
            if let Err(e) = done {
                eprintln!("populate: {e:#}");
            }
            let count = count + 1;
            if count % 10_000 == 0 {
                eprintln!("populate: {count} deployments");
            }
            count
        })
        .await;
    println!("{}", json!({ "deployments": made, "seconds": started.elapsed().as_secs_f64() }));
    Ok(())
}

#[derive(clap::Args)]
pub struct ProbeArgs {
    /// The edge, `host:port`.
    #[arg(long)]
    edge: String,
    #[arg(long)]
    host: String,
    #[arg(long, default_value = "/")]
    path: String,
    /// Requests per second, one at a time over one keep-alive connection.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// GETs at a fixed rate; prints latency percentiles as JSON (ms).
pub async fn probe(args: ProbeArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let url = format!("http://{}{}", args.edge, args.path);
    let every = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let mut next = Instant::now();
    let (mut samples, mut failures) = (Vec::new(), 0u64);
    while Instant::now() < end {
        tokio::time::sleep_until(next.into()).await;
        next += every;
        let sent = Instant::now();
        match client.get(&url).header("host", &args.host).send().await {
            Ok(r) if r.status().is_success() => {
                let _ = r.bytes().await;
                samples.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            _ => failures += 1,
        }
    }
    if samples.is_empty() {
        bail!("no request succeeded");
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "{}",
        json!({ "requests": samples.len(), "failures": failures, "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0) })
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct PromoteArgs {
    #[arg(long)]
    api: String,
    #[arg(long)]
    token_file: std::path::PathBuf,
    #[arg(long, default_value_t = 100)]
    rounds: usize,
}

/// Promotes two deployments in turn; prints the API's answer time and the
/// part of it spent waiting for the edge to serve the change (ms).
pub async fn promotes(args: PromoteArgs) -> anyhow::Result<()> {
    let api = api(&args.api, &args.token_file)?;
    let a = deploy(&api, "ryw", "version a", true).await?;
    let b = deploy(&api, "ryw", "version b", true).await?;
    let (mut total, mut waited) = (Vec::new(), Vec::new());
    for i in 0..args.rounds {
        let id = if i % 2 == 0 { &a.id } else { &b.id };
        let started = Instant::now();
        let d: Deployment = api.post(&format!("/api/v1/deployments/{id}/promote"), &json!({})).await?;
        total.push(started.elapsed().as_secs_f64() * 1000.0);
        let p = d.propagation.context("a promote answers with its propagation")?;
        if !p.served {
            bail!("round {i}: the edge did not confirm the promote");
        }
        waited.push(p.waited_ms as f64);
    }
    let stats = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        json!({ "p50": at(0.5), "p99": at(0.99), "max": at(1.0) })
    };
    println!("{}", json!({ "api_ms": stats(total), "edge_wait_ms": stats(waited) }));
    Ok(())
}
