//! `helix policy`: the organisation's Rego module — set, show, test, rm.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use helix_core::api::{Policy, PolicyVerdict, SetPolicy, TestPolicy};

use crate::{ClientArgs, api, print_json};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Replace the organisation's policy with FILE (a `package helix` module; owners).
    Set {
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the policy in force.
    Show {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Evaluate an input document (JSON) against the policy in force, or --file's; exit 1 when it denies.
    Test {
        #[arg(long)]
        input: PathBuf,
        /// A module to test instead of the one in force.
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove the policy: every decision is then the roles' alone.
    Rm {
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

pub async fn policy(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Set { file, client } => {
            let p: Policy = api(&client)?.put("/api/v1/policy", &SetPolicy { source: read(&file)? }).await?;
            if client.json {
                print_json(&p);
            } else {
                println!("✔ policy version {} in force ({} bytes from {})", p.version, p.source.len(), file.display());
            }
        }
        PolicyCommand::Show { client } => {
            let p: Policy = api(&client)?.get("/api/v1/policy").await?;
            if client.json {
                print_json(&p);
            } else {
                eprintln!(
                    "# version {} · set by {} · {}",
                    p.version,
                    p.updated_by,
                    helix_core::cron::rfc3339(p.updated_at_ms)
                );
                print!("{}", p.source);
            }
        }
        PolicyCommand::Test { input, file, client } => {
            let input: serde_json::Value =
                serde_json::from_str(&read(&input)?).with_context(|| format!("{} is not JSON", input.display()))?;
            let source = file.as_ref().map(read).transpose()?;
            let v: PolicyVerdict = api(&client)?.post("/api/v1/policy/test", &TestPolicy { input, source }).await?;
            if client.json {
                print_json(&v);
            } else if v.allowed {
                println!("✔ allowed ({} µs)", v.eval_us);
            } else {
                println!("✘ denied ({} µs):", v.eval_us);
                for m in &v.messages {
                    println!("  - {m}");
                }
            }
            if !v.allowed {
                std::process::exit(1);
            }
        }
        PolicyCommand::Rm { client } => {
            let _: serde_json::Value = api(&client)?.delete("/api/v1/policy").await?;
            println!("✔ policy removed");
        }
    }
    Ok(())
}
