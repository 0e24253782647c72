//! `helix projects link`, `helix build`, `helix builds`: git-linked projects
//! and their builds, with logs followed live over server-sent events.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use helix_core::api::{Build, LinkProject, LogLine, ProjectLink, RequestBuild};
use helix_core::build::BuildState;

use crate::{ClientArgs, api, print_json};

#[derive(Subcommand)]
pub enum ProjectsCommand {
    /// Connect a project to its git repository: pushes build it.
    Link {
        project: String,
        /// Clone URL (https://, ssh://, git@host:path, file://).
        #[arg(long)]
        repo: String,
        #[arg(long, default_value = "main")]
        production_branch: String,
        /// Read a token for a private repository from this environment variable.
        #[arg(long, conflicts_with = "deploy_key")]
        git_token_env: Option<String>,
        /// A deploy key (SSH private key file) for a private repository.
        #[arg(long)]
        deploy_key: Option<PathBuf>,
        /// Where a self-hosted git host takes commit statuses (e.g.
        /// https://git.example.com/api/v4); github.com, gitlab.com and
        /// bitbucket.org need none.
        #[arg(long)]
        status_api: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a project's link and webhook URLs (not its secret).
    Show {
        project: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The projects this token can see, with their production URLs.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args)]
pub struct BuildArgs {
    #[arg(long)]
    project: String,
    /// The branch to build (default: the production branch).
    #[arg(long = "ref")]
    git_ref: Option<String>,
    /// Follow the build's log until it ends.
    #[arg(short, long)]
    follow: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BuildsArgs {
    #[command(subcommand)]
    command: Option<BuildsCommand>,
    /// List this project's builds, newest first.
    #[arg(long)]
    project: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand)]
enum BuildsCommand {
    /// Print a build's log; `-f` follows it as the build prints.
    Logs {
        id: String,
        #[arg(short, long)]
        follow: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one build.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel a queued or running build.
    Cancel {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn projects(cmd: ProjectsCommand) -> anyhow::Result<()> {
    match cmd {
        ProjectsCommand::Link { project, repo, production_branch, git_token_env, deploy_key, status_api, client } => {
            let git_credential = match (git_token_env, deploy_key) {
                (Some(var), _) => {
                    Some(std::env::var(&var).with_context(|| format!("environment variable {var} is not set"))?)
                }
                (None, Some(file)) => Some(
                    std::fs::read_to_string(&file).with_context(|| format!("reading deploy key {}", file.display()))?,
                ),
                (None, None) => None,
            };
            let body = LinkProject { repo, production_branch: Some(production_branch), git_credential, status_api };
            let link: ProjectLink = api(&client)?.put(&format!("/api/v1/projects/{project}/link"), &body).await?;
            if client.json {
                print_json(&link);
            } else {
                print_link(&link);
            }
            Ok(())
        }
        ProjectsCommand::List { client } => {
            let projects: Vec<helix_core::api::ProjectSummary> = api(&client)?.get("/api/v1/projects").await?;
            if client.json {
                print_json(&projects);
            } else if projects.is_empty() {
                println!("no projects yet (helix deploy DIR makes one)");
            } else {
                for p in &projects {
                    let live = p
                        .production
                        .as_deref()
                        .map_or("no production deployment".to_owned(), |id| format!("{} ({id})", p.url));
                    println!("{:<24} {:<12} {live}", p.name, p.org);
                }
            }
            Ok(())
        }
        ProjectsCommand::Show { project, client } => {
            let link: ProjectLink = api(&client)?.get(&format!("/api/v1/projects/{project}/link")).await?;
            if client.json {
                print_json(&link)
            } else {
                print_link(&link)
            }
            Ok(())
        }
    }
}

fn print_link(link: &ProjectLink) {
    println!("✔ {} builds from {} (production branch {})", link.project, link.repo, link.production_branch);
    if link.has_git_credential {
        println!("  git credential: stored encrypted (also posts commit statuses, when it may)");
    }
    if let Some(api) = &link.status_api {
        println!("  commit statuses to: {api}");
    }
    println!("  webhooks (content type application/json):");
    for (provider, url) in &link.hooks {
        println!("    {provider:<10} {url}");
    }
    if let Some(secret) = &link.webhook_secret {
        println!("  webhook secret: {secret}");
        println!("    (GitHub/Bitbucket: the hook's secret; GitLab: its secret token)");
    }
}

pub async fn build(args: BuildArgs) -> anyhow::Result<()> {
    let api = api(&args.client)?;
    let body = RequestBuild { git_ref: args.git_ref };
    let b: Build = api.post(&format!("/api/v1/projects/{}/builds", args.project), &body).await?;
    if args.follow {
        if !args.client.json {
            println!("build {} queued for {} ({})", b.id, b.branch, b.url);
        }
        return follow(&api, &b.id, args.client.json).await;
    }
    if args.client.json {
        print_json(&b);
    } else {
        println!("✔ build {} queued for {} · will serve {}", b.id, b.branch, b.url);
        println!("  follow it: helix builds logs {} -f", b.id);
    }
    Ok(())
}

pub async fn builds(args: BuildsArgs) -> anyhow::Result<()> {
    match args.command {
        None => {
            let project = args.project.context("name a project: helix builds --project NAME")?;
            let list: Vec<Build> = api(&args.client)?.get(&format!("/api/v1/projects/{project}/builds")).await?;
            if args.client.json {
                print_json(&list);
            } else {
                for b in &list {
                    let commit = b.commit.as_deref().map_or("-", |c| &c[..c.len().min(10)]);
                    let what = b.failed_step.as_deref().map(|s| format!(" (failed in {s})")).unwrap_or_default();
                    println!("{}  {:<9} {:<20} {commit:<10} {}{what}", b.id, b.state.as_str(), b.branch, b.url);
                }
            }
            Ok(())
        }
        Some(BuildsCommand::Logs { id, follow: true, client }) => follow(&api(&client)?, &id, client.json).await,
        Some(BuildsCommand::Logs { id, follow: false, client }) => {
            #[derive(serde::Deserialize, serde::Serialize)]
            struct Log {
                build: Build,
                lines: Vec<LogLine>,
            }
            let log: Log = api(&client)?.get(&format!("/api/v1/builds/{id}/logs")).await?;
            if client.json {
                print_json(&log);
            } else {
                for l in &log.lines {
                    print_line(l);
                }
            }
            Ok(())
        }
        Some(BuildsCommand::Show { id, client }) => {
            let b: Build = api(&client)?.get(&format!("/api/v1/builds/{id}")).await?;
            if client.json {
                print_json(&b)
            } else {
                print_build(&b)
            }
            Ok(())
        }
        Some(BuildsCommand::Cancel { id, client }) => {
            let b: Build = api(&client)?.post(&format!("/api/v1/builds/{id}/cancel"), &serde_json::json!({})).await?;
            if client.json {
                print_json(&b)
            } else {
                println!("✔ build {} canceled", b.id)
            }
            Ok(())
        }
    }
}

/// Prints log lines as the server sends them, until the build ends; fails
/// when the build did.
async fn follow(api: &helix_client::Api, id: &str, json: bool) -> anyhow::Result<()> {
    let resp = api.get_streaming(&format!("/api/v1/builds/{id}/logs?follow=1")).await?;
    let mut outcome = None;
    crate::sse::each(resp, |event, data| {
        match event {
            "line" => {
                let l: LogLine = serde_json::from_str(data).context("reading a log line")?;
                if json { println!("{data}") } else { print_line(&l) }
            }
            "end" => {
                let b: Build = serde_json::from_str(data).context("reading the build's end")?;
                if json {
                    println!("{data}");
                } else {
                    print_build(&b);
                }
                outcome = Some(match b.state {
                    BuildState::Ready => Ok(()),
                    other => Err(anyhow::anyhow!("build {} ended {}", b.id, other.as_str())),
                });
                return Ok(std::ops::ControlFlow::Break(()));
            }
            _ => {}
        }
        Ok(std::ops::ControlFlow::Continue(()))
    })
    .await?;
    outcome.unwrap_or_else(|| anyhow::bail!("the log stream ended before the build did"))
}

fn print_line(l: &LogLine) {
    let secs = l.at_ms.div_euclid(1000);
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    println!("{h:02}:{m:02}:{s:02}.{:03} {}", l.at_ms.rem_euclid(1000), l.line);
}

fn print_build(b: &Build) {
    let mark = match b.state {
        BuildState::Ready => "✔",
        BuildState::Error | BuildState::Canceled => "✘",
        _ => "…",
    };
    println!("{mark} build {} {} · {} {}", b.id, b.state.as_str(), b.branch, b.commit.as_deref().unwrap_or(""));
    if let Some(d) = &b.detected {
        println!("  detected:   {d}");
    }
    if b.state == BuildState::Ready {
        println!("  url:        {}", b.url);
        if let Some(u) = &b.deployment_url {
            println!("  deployment: {u}");
        }
    }
    if let Some(e) = &b.error {
        let step = b.failed_step.as_deref().map(|s| format!(" in step {s}")).unwrap_or_default();
        println!("  error{step}: {e}");
    }
    if let Some(s) = &b.commit_status {
        println!("  commit status: {s}");
    }
}
