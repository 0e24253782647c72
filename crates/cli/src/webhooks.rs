//! `helix webhooks`: a project's outgoing webhooks and their deliveries.

use clap::Subcommand;
use helix_core::api::{CreateWebhook, Webhook};

use crate::{ClientArgs, api, print_json};

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// POST the project's events to URL, signed (X-Helix-Signature-256); the secret is printed once.
    Add {
        url: String,
        #[arg(long)]
        project: String,
        /// Event types (deploy.ready, deploy.promoted, build.finished, env.changed, …); default: all.
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Read the signing secret from this environment variable (default: a new one).
        #[arg(long, value_name = "VAR")]
        secret_env: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The project's webhooks.
    List {
        #[arg(long)]
        project: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a webhook (its pending deliveries go too).
    Rm {
        id: String,
        #[arg(long)]
        project: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Every delivery: event, state, attempts, the last answer.
    Deliveries {
        #[arg(long)]
        project: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn webhooks(cmd: WebhooksCommand) -> anyhow::Result<()> {
    match cmd {
        WebhooksCommand::Add { url, project, events, secret_env, client } => {
            let secret = match secret_env {
                Some(var) => Some(std::env::var(&var).map_err(|_| anyhow::anyhow!("{var} is not set"))?),
                None => None,
            };
            let made: Webhook = api(&client)?
                .post(&format!("/api/v1/projects/{project}/webhooks"), &CreateWebhook { url, events, secret })
                .await?;
            if client.json {
                print_json(&made);
            } else {
                println!("✔ webhook {} → {} ({})", made.id, made.url, made.events.join(", "));
                if let Some(secret) = &made.secret {
                    println!("  secret (shown once): {secret}");
                }
            }
        }
        WebhooksCommand::List { project, client } => {
            let list: Vec<Webhook> = api(&client)?.get(&format!("/api/v1/projects/{project}/webhooks")).await?;
            if client.json {
                print_json(&list);
            } else {
                for w in &list {
                    println!("{}  {}  {}", w.id, w.url, w.events.join(","));
                }
            }
        }
        WebhooksCommand::Rm { id, project, client } => {
            let _: serde_json::Value =
                api(&client)?.delete(&format!("/api/v1/projects/{project}/webhooks/{id}")).await?;
            println!("✔ webhook {id} removed");
        }
        WebhooksCommand::Deliveries { project, client } => {
            let out: serde_json::Value =
                api(&client)?.get(&format!("/api/v1/projects/{project}/webhooks/deliveries")).await?;
            if client.json {
                print_json(&out);
            } else {
                for d in out["deliveries"].as_array().into_iter().flatten() {
                    let answer = d["last_status"]
                        .as_i64()
                        .map_or_else(|| d["last_error"].as_str().unwrap_or("").to_owned(), |s| format!("HTTP {s}"));
                    println!(
                        "{:>6}  {:<18} {:<10} {} attempt(s)  {answer}",
                        d["seq"],
                        d["event"].as_str().unwrap_or(""),
                        d["state"].as_str().unwrap_or(""),
                        d["attempts"]
                    );
                }
            }
        }
    }
    Ok(())
}
