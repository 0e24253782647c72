//! `helix env` and `helix keys`: a project's environment variables and
//! secrets, and the master key that protects them.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use helix_core::env::{EnvVar, ImportEnv, PulledEnv, Rotated, SetEnv};

use crate::{ClientArgs, api, print_json};

#[derive(Args)]
pub struct EnvArgs {
    #[command(subcommand)]
    command: EnvCommand,
}

/// Which project and environments a command is about.
#[derive(Args, Clone)]
struct Scope {
    /// The project (default: the current directory's name, as `helix deploy` does).
    #[arg(long)]
    project: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand)]
enum EnvCommand {
    /// Set a variable (VALUE omitted: read from standard input, so a secret stays out of shell history).
    Set {
        key: String,
        value: Option<String>,
        /// production, preview, development or a custom name; repeat for several (default: the three).
        #[arg(long = "env", value_name = "ENV")]
        environments: Vec<String>,
        /// Only builds and functions of this branch.
        #[arg(long)]
        branch: Option<String>,
        /// Encrypted at rest, never shown again: only builds and functions read it.
        #[arg(long)]
        secret: bool,
        #[command(flatten)]
        scope: Scope,
    },
    /// The project's variables (secrets masked).
    List {
        #[arg(long = "env", value_name = "ENV")]
        environment: Option<String>,
        #[command(flatten)]
        scope: Scope,
    },
    /// Remove a variable (from every environment, or --env's).
    Rm {
        key: String,
        #[arg(long = "env", value_name = "ENV")]
        environment: Option<String>,
        #[arg(long)]
        branch: Option<String>,
        #[command(flatten)]
        scope: Scope,
    },
    /// Write one environment's plain values to a .env file (secrets are named, not given).
    Pull {
        /// Default: .env.local
        file: Option<PathBuf>,
        #[arg(long = "env", value_name = "ENV", default_value = "development")]
        environment: String,
        #[arg(long)]
        branch: Option<String>,
        #[command(flatten)]
        scope: Scope,
    },
    /// Set every KEY=value of a .env file.
    Import {
        file: PathBuf,
        #[arg(long = "env", value_name = "ENV")]
        environments: Vec<String>,
        #[arg(long)]
        branch: Option<String>,
        #[arg(long)]
        secret: bool,
        #[command(flatten)]
        scope: Scope,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Re-wrap every project's data key and git credential under a new master key (server admin).
    Rotate {
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn project_of(scope: &Scope) -> anyhow::Result<String> {
    Ok(helix_client::deploy::project_name(Path::new("."), scope.project.as_deref())?.to_string())
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let q: Vec<String> = pairs.iter().filter_map(|(k, v)| v.map(|v| format!("{k}={}", urlencode(v)))).collect();
    if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) }
}

pub async fn env(args: EnvArgs) -> anyhow::Result<()> {
    match args.command {
        EnvCommand::Set { key, value, environments, branch, secret, scope } => {
            let value = match value {
                Some(v) => v,
                None => {
                    let mut v = String::new();
                    std::io::stdin().read_to_string(&mut v).context("reading the value from standard input")?;
                    v.strip_suffix('\n').map(|s| s.strip_suffix('\r').unwrap_or(s)).unwrap_or(&v).to_owned()
                }
            };
            let project = project_of(&scope)?;
            let body = SetEnv { value, environments, branch, secret };
            let path = format!("/api/v1/projects/{project}/env/{}", urlencode(&key));
            let set: Vec<EnvVar> = api(&scope.client)?.put(&path, &body).await?;
            if scope.client.json {
                print_json(&set);
            } else {
                let kind = if secret { "secret" } else { "variable" };
                let envs: Vec<&str> = set.iter().map(|v| v.environment.as_str()).collect();
                println!("✔ {project}: {kind} {key} set for {}", envs.join(", "));
                println!("  builds and function instances started from now on see it");
            }
        }
        EnvCommand::List { environment, scope } => {
            let project = project_of(&scope)?;
            let path = format!("/api/v1/projects/{project}/env{}", query(&[("environment", environment.as_deref())]));
            let list: Vec<EnvVar> = api(&scope.client)?.get(&path).await?;
            if scope.client.json {
                print_json(&list);
            } else if list.is_empty() {
                println!("(no variables in {project})");
            } else {
                for v in &list {
                    let shown = v.value.clone().unwrap_or_else(|| "•••••• (secret)".to_owned());
                    let branch = v.branch.as_ref().map(|b| format!(" [{b}]")).unwrap_or_default();
                    println!("{:<28} {:<12}{branch} {shown}", v.name, v.environment);
                }
            }
        }
        EnvCommand::Rm { key, environment, branch, scope } => {
            let project = project_of(&scope)?;
            let q = query(&[("environment", environment.as_deref()), ("branch", branch.as_deref())]);
            let path = format!("/api/v1/projects/{project}/env/{}{q}", urlencode(&key));
            let out: serde_json::Value = api(&scope.client)?.delete(&path).await?;
            if scope.client.json {
                print_json(&out);
            } else {
                println!("✔ {project}: {key} removed ({} environment(s))", out["removed"]);
            }
        }
        EnvCommand::Pull { file, environment, branch, scope } => {
            let project = project_of(&scope)?;
            let q = query(&[("environment", Some(&environment)), ("branch", branch.as_deref())]);
            let pulled: PulledEnv = api(&scope.client)?.get(&format!("/api/v1/projects/{project}/env/pull{q}")).await?;
            if scope.client.json {
                print_json(&pulled);
                return Ok(());
            }
            let file = file.unwrap_or_else(|| PathBuf::from(".env.local"));
            std::fs::write(&file, dotenv(&project, &pulled)).with_context(|| format!("writing {}", file.display()))?;
            println!("✔ {} variables of {project} ({environment}) written to {}", pulled.values.len(), file.display());
            if !pulled.secrets.is_empty() {
                println!("  not written, being secrets: {}", pulled.secrets.join(", "));
            }
        }
        EnvCommand::Import { file, environments, branch, secret, scope } => {
            let project = project_of(&scope)?;
            let dotenv = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let body = ImportEnv { dotenv, environments, branch, secret };
            let out: serde_json::Value =
                api(&scope.client)?.post(&format!("/api/v1/projects/{project}/env/import"), &body).await?;
            if scope.client.json {
                print_json(&out);
            } else {
                let names: Vec<&str> =
                    out["imported"].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
                println!(
                    "✔ {project}: {} variable(s) imported from {}: {}",
                    names.len(),
                    file.display(),
                    names.join(", ")
                );
            }
        }
    }
    Ok(())
}

/// A `.env` file's text: values double-quoted and escaped.
fn dotenv(project: &str, pulled: &PulledEnv) -> String {
    let mut out = format!("# {project} ({}), written by helix env pull\n", pulled.environment);
    for (k, v) in &pulled.values {
        let escaped = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        out.push_str(&format!("{k}=\"{escaped}\"\n"));
    }
    for s in &pulled.secrets {
        out.push_str(&format!("# {s} is a secret: set it locally yourself\n"));
    }
    out
}

pub async fn keys(cmd: KeysCommand) -> anyhow::Result<()> {
    let KeysCommand::Rotate { client } = cmd;
    let r: Rotated = api(&client)?.post("/api/v1/keys/rotate", &serde_json::json!({})).await?;
    if client.json {
        print_json(&r);
    } else {
        println!(
            "✔ everything is sealed under master key {} now: {} project key(s), {} git credential(s) re-wrapped",
            r.key, r.project_keys, r.git_credentials
        );
    }
    Ok(())
}
