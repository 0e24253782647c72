//! The rollback probe: keep-alive clients hammer `GET /` on a production
//! host while the probe sends one rollback request, then reports how long
//! after that request the new deployment's content was still served, and
//! every non-2xx response or transport error of the whole run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(clap::Args)]
pub struct Args {
    /// The edge, `host:port`.
    #[arg(long)]
    edge: String,
    /// Host header of the production site, e.g. `rb.localhost`.
    #[arg(long)]
    host: String,
    /// The control API, `host:port`.
    #[arg(long)]
    api: String,
    /// File holding the API token.
    #[arg(long)]
    token_file: std::path::PathBuf,
    #[arg(long)]
    project: String,
    /// Concurrent keep-alive clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Load before the rollback request.
    #[arg(long, default_value_t = 1000)]
    before_ms: u64,
    /// Load after the rollback request.
    #[arg(long, default_value_t = 1000)]
    after_ms: u64,
    /// Text only the old (rolled-back-to) deployment serves.
    #[arg(long)]
    old_marker: String,
    /// Text only the new (rolled-back-from) deployment serves.
    #[arg(long)]
    new_marker: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    Old,
    New,
    Neither,
    Failed,
}

/// One request: when it was sent and answered (µs since the run began).
struct Sample {
    sent_us: u64,
    done_us: u64,
    status: u16,
    seen: Seen,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("reading {}", args.token_file.display()))?
        .trim()
        .to_owned();
    let clock = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let markers = Arc::new((args.old_marker.into_bytes(), args.new_marker.into_bytes()));
    let mut clients = Vec::new();
    for _ in 0..args.clients {
        let (edge, host, stop, markers) = (args.edge.clone(), args.host.clone(), stop.clone(), markers.clone());
        clients.push(tokio::spawn(async move { client(&edge, &host, clock, &stop, &markers).await }));
    }

    // Connect to the API before the clock starts, so only the request counts.
    let mut api = connect(&args.api).await?;
    tokio::time::sleep(Duration::from_millis(args.before_ms)).await;
    let req = Request::post(format!("/api/v1/projects/{}/rollback", args.project))
        .header(header::HOST, &args.api)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())?;
    let rollback_us = micros(clock);
    let resp = api.send_request(req).await.context("sending the rollback request")?;
    let api_status = resp.status();
    let api_body = resp.into_body().collect().await?.to_bytes();
    let api_done_us = micros(clock);
    if !api_status.is_success() {
        bail!("rollback answered {api_status}: {}", String::from_utf8_lossy(&api_body));
    }
    tokio::time::sleep(Duration::from_millis(args.after_ms)).await;
    stop.store(true, Ordering::Relaxed);

    let mut samples = Vec::new();
    let mut flip_backs = 0;
    for c in clients {
        let mine = c.await?;
        // A client that saw the old content and then the new again.
        let mut saw_old = false;
        for s in &mine {
            saw_old |= s.seen == Seen::Old && s.sent_us >= rollback_us;
            flip_backs += usize::from(saw_old && s.seen == Seen::New);
        }
        samples.extend(mine);
    }
    report(&samples, rollback_us, api_done_us, flip_backs)
}

fn report(samples: &[Sample], rollback_us: u64, api_done_us: u64, flip_backs: usize) -> anyhow::Result<()> {
    let count = |f: &dyn Fn(&Sample) -> bool| samples.iter().filter(|s| f(s)).count();
    let non_2xx = count(&|s| s.seen != Seen::Failed && !(200..300).contains(&s.status));
    let transport_errors = count(&|s| s.seen == Seen::Failed);
    let neither = count(&|s| s.seen == Seen::Neither);
    let old_before = count(&|s| s.seen == Seen::Old && s.done_us < rollback_us);
    let new_after = samples.iter().filter(|s| s.seen == Seen::New && s.done_us > rollback_us);
    let last_new_done = new_after.clone().map(|s| s.done_us).max();
    let last_new_sent = new_after.map(|s| s.sent_us).max();
    let first_old_done = samples.iter().filter(|s| s.seen == Seen::Old).map(|s| s.done_us).min();
    let ms = |us: Option<u64>| us.map_or(0.0, |us| us.saturating_sub(rollback_us) as f64 / 1000.0);
    let switch_ms = ms(last_new_done);
    let run_s = samples.iter().map(|s| s.done_us).max().unwrap_or(0) as f64 / 1e6;
    let out = serde_json::json!({
        "requests": samples.len(),
        "req_per_s": samples.len() as f64 / run_s.max(1e-9),
        "non_2xx": non_2xx,
        "transport_errors": transport_errors,
        "neither_content": neither,
        "old_before_rollback": old_before,
        "flip_backs": flip_backs,
        "api_ms": (api_done_us - rollback_us) as f64 / 1000.0,
        "first_old_ms": ms(first_old_done),
        "last_new_sent_ms": ms(last_new_sent),
        "switch_ms": switch_ms,
        "saw_old": first_old_done.is_some(),
    });
    println!("{out}");
    Ok(())
}

fn micros(clock: Instant) -> u64 {
    clock.elapsed().as_micros() as u64
}

async fn connect(addr: &str) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One keep-alive client: requests back to back until `stop`; a failed
/// request is recorded and the connection made anew.
async fn client(
    edge: &str,
    host: &str,
    clock: Instant,
    stop: &AtomicBool,
    markers: &(Vec<u8>, Vec<u8>),
) -> Vec<Sample> {
    let mut samples = Vec::with_capacity(100_000);
    let mut conn: Option<SendRequest<Empty<Bytes>>> = None;
    while !stop.load(Ordering::Relaxed) {
        let sent_us = micros(clock);
        let result = async {
            if conn.is_none() {
                conn = Some(connect(edge).await?);
            }
            let sender = conn.as_mut().expect("connected above");
            sender.ready().await?;
            let req = Request::get("/").header(header::HOST, host).body(Empty::<Bytes>::new())?;
            let resp = sender.send_request(req).await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        }
        .await;
        let done_us = micros(clock);
        let sample = match result {
            Ok((status, body)) => {
                let has = |m: &[u8]| body.windows(m.len()).any(|w| w == m);
                let seen = if has(&markers.0) {
                    Seen::Old
                } else if has(&markers.1) {
                    Seen::New
                } else {
                    Seen::Neither
                };
                Sample { sent_us, done_us, status, seen }
            }
            Err(_) => {
                conn = None;
                Sample { sent_us, done_us, status: 0, seen: Seen::Failed }
            }
        };
        samples.push(sample);
    }
    samples
}
