//! `helix logs` and `helix functions`: what a project's functions printed
//! and how their instances fare.

use std::ops::ControlFlow;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;

use crate::{ClientArgs, api, print_json};

#[derive(Args)]
pub struct LogsArgs {
    #[arg(long)]
    project: String,
    /// Only this function (`api/hello`, a Netlify function's name, `pages`).
    #[arg(long)]
    function: Option<String>,
    /// Only this deployment.
    #[arg(long)]
    deployment: Option<String>,
    /// Keep printing lines as they are written.
    #[arg(short, long)]
    follow: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct FunctionsArgs {
    #[arg(long)]
    project: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Deserialize, serde::Serialize)]
struct Record {
    id: String,
    at_ms: i64,
    deployment: String,
    function: String,
    #[serde(default)]
    request_id: String,
    stream: String,
    line: String,
}

pub async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let api = api(&args.client)?;
    let mut query = vec![];
    if let Some(f) = &args.function {
        query.push(format!("function={}", urlencode(f)));
    }
    if let Some(d) = &args.deployment {
        query.push(format!("deployment={}", urlencode(d)));
    }
    let path = |extra: &str| {
        let mut q = query.clone();
        if !extra.is_empty() {
            q.push(extra.to_owned());
        }
        format!("/api/v1/projects/{}/logs?{}", args.project, q.join("&"))
    };
    let json = args.client.json;
    if args.follow {
        let resp = api.get_streaming(&path("follow=1")).await?;
        crate::sse::each(resp, |event, data| {
            if event == "line" {
                let r: Record = serde_json::from_str(data).context("reading a log record")?;
                if json { println!("{data}") } else { print(&r) }
            }
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        anyhow::bail!("the server ended the log stream");
    }
    #[derive(Deserialize, serde::Serialize)]
    struct Page {
        records: Vec<Record>,
    }
    let page: Page = api.get(&path("")).await?;
    if json {
        print_json(&page);
    } else if page.records.is_empty() {
        println!("no function log lines for {} yet", args.project);
    } else {
        page.records.iter().for_each(print);
    }
    Ok(())
}

fn print(r: &Record) {
    let secs = r.at_ms.div_euclid(1000);
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let id = if r.request_id.is_empty() { String::new() } else { format!(" {}", r.request_id) };
    let stream = match r.stream.as_str() {
        "stderr" => " !",
        "system" => " ·",
        _ => "",
    };
    println!("{h:02}:{m:02}:{s:02}.{:03} {}{id}{stream} {}", r.at_ms.rem_euclid(1000), r.function, r.line);
}

pub async fn functions(args: FunctionsArgs) -> anyhow::Result<()> {
    let api = api(&args.client)?;
    let value: serde_json::Value = api.get(&format!("/api/v1/projects/{}/functions", args.project)).await?;
    if args.client.json {
        print_json(&value);
        return Ok(());
    }
    let list = value["functions"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no function of {} has run on this server yet", args.project);
        return Ok(());
    }
    println!(
        "{:<28} {:<27} {:>5} {:>7} {:>6} {:>6} {:>7} {:>6}",
        "FUNCTION", "DEPLOYMENT", "INST", "CALLS", "COLD", "HITS", "QUEUED", "ERRORS"
    );
    for f in list {
        let n = |k: &str| f[k].as_u64().unwrap_or(0);
        println!(
            "{:<28} {:<27} {:>5} {:>7} {:>6} {:>6} {:>7} {:>6}",
            f["function"].as_str().unwrap_or_default(),
            f["deployment"].as_str().unwrap_or_default(),
            n("instances"),
            n("invocations"),
            n("cold_starts"),
            n("pool_hits"),
            n("queued"),
            n("timeouts") + n("crashes"),
        );
    }
    Ok(())
}

pub async fn crons(args: FunctionsArgs) -> anyhow::Result<()> {
    let api = api(&args.client)?;
    let value: serde_json::Value = api.get(&format!("/api/v1/projects/{}/crons", args.project)).await?;
    if args.client.json {
        print_json(&value);
        return Ok(());
    }
    let list = value["crons"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("{}'s production deployment has no schedules", args.project);
        return Ok(());
    }
    println!("{:<32} {:<16} {:<22} LAST RUN", "SCHEDULE", "WHEN (UTC)", "NEXT RUN");
    for c in list {
        let last = &c["last_run"];
        let last = if last.is_null() {
            "never".to_owned()
        } else {
            let slot = last["slot_ms"].as_i64().unwrap_or(0) / 1000;
            let (h, m) = ((slot / 3600) % 24, (slot / 60) % 60);
            format!(
                "{h:02}:{m:02} {} · {}",
                last["status"].as_str().unwrap_or("?"),
                last["detail"].as_str().unwrap_or("")
            )
        };
        println!(
            "{:<32} {:<16} {:<22} {last}",
            c["name"].as_str().unwrap_or_default(),
            c["schedule"].as_str().unwrap_or_default(),
            c["next_run"].as_str().unwrap_or("—"),
        );
    }
    Ok(())
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
