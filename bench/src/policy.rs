//! Policy at a decision point: a 50-rule module, evaluated through the
//! server's own path (`POST /policy/test` reports the time inside), and a
//! real decision point (promote) with and without it.

use std::time::Instant;

use anyhow::Context;
use helix_core::api::{Deployment, PolicyVerdict};
use serde_json::json;

use crate::load::{api, deploy};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    api: String,
    #[arg(long)]
    token_file: std::path::PathBuf,
    #[arg(long, default_value_t = 50)]
    rules: usize,
    #[arg(long, default_value_t = 2000)]
    rounds: usize,
}

/// `rules` deny rules of the kinds real policies have: branch and
/// environment checks, roles, projects, business hours, request fields.
pub fn module(rules: usize) -> String {
    let mut m = String::from(
        "package helix\n\nweekdays := {\"Monday\", \"Tuesday\", \"Wednesday\", \"Thursday\", \"Friday\"}\n\n",
    );
    for i in 0..rules {
        let body = match i % 5 {
            0 => format!(
                "\tinput.action == \"promote\"\n\tinput.project == \"p{i}\"\n\tinput.deployment.branch != \"main\"\n\tmsg := \"p{i}: main only\""
            ),
            1 => format!(
                "\tinput.action in {{\"deploy\", \"promote\"}}\n\tinput.actor.role == \"viewer\"\n\tinput.project == \"p{i}\"\n\tmsg := \"p{i}: viewers cannot\""
            ),
            2 => format!(
                "\tinput.action == \"rollback\"\n\tnot weekdays[input.time.weekday]\n\tinput.project == \"p{i}\"\n\tmsg := \"p{i}: weekdays only\""
            ),
            3 => format!(
                "\tinput.action == \"env.write\"\n\tinput.request.secret\n\tinput.actor.role != \"owner\"\n\tinput.project == \"p{i}\"\n\tmsg := \"p{i}: owners write secrets\""
            ),
            _ => format!(
                "\tinput.action == \"token.create\"\n\tinput.request.role == \"owner\"\n\tstartswith(input.actor.user, \"bot-{i}\")\n\tmsg := \"{i}: bots make no owners\""
            ),
        };
        m.push_str(&format!("deny contains msg if {{\n{body}\n}}\n\n"));
    }
    m
}

/// `n` promotes of `a` and `b` in turn: each one's answer time (ms).
async fn promotes(api: &helix_client::Api, a: &str, b: &str, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::new();
    for i in 0..n {
        let id = if i % 2 == 0 { a } else { b };
        let started = Instant::now();
        let _: Deployment = api.post(&format!("/api/v1/deployments/{id}/promote"), &json!({})).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(times)
}

fn stats(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    json!({ "p50": at(0.5), "p99": at(0.99), "max": at(1.0) })
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let api = api(&args.api, &args.token_file)?;
    let source = module(args.rules);
    let input = json!({
        "action": "promote", "project": "shop", "environment": "production",
        "actor": { "kind": "user", "user": "ann", "org": "default", "role": "developer" },
        "deployment": { "id": "d", "branch": "main", "commit": "c", "source": "git", "production": false },
        "request": {},
    });
    let (mut inside, mut http) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        let started = Instant::now();
        let v: PolicyVerdict = api
            .post("/api/v1/policy/test", &json!({ "input": input, "source": source }))
            .await
            .context("policy test")?;
        http.push(started.elapsed().as_secs_f64() * 1000.0);
        inside.push(v.eval_us as f64 / 1000.0);
        anyhow::ensure!(v.allowed, "the bench input must be allowed: {:?}", v.messages);
    }
    // A real decision point: promote, without and then with the module.
    let a = deploy(&api, "policybench", "a", true).await?;
    let b = deploy(&api, "policybench", "b", true).await?;
    let n = args.rounds / 4;
    let without = promotes(&api, &a.id, &b.id, n).await?;
    let _: serde_json::Value = api.put("/api/v1/policy", &json!({ "source": source })).await?;
    let with = promotes(&api, &a.id, &b.id, n).await?;
    let _: serde_json::Value = api.delete("/api/v1/policy").await?;
    println!(
        "{}",
        json!({
            "rules": args.rules,
            "eval_ms": stats(inside),
            "policy_test_http_ms": stats(http),
            "promote_without_policy_ms": stats(without),
            "promote_with_policy_ms": stats(with),
        })
    );
    Ok(())
}
