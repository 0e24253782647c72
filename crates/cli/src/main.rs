//! `helix`: the HelixStack CLI and server in one binary.
//!
//! This file parses arguments and dispatches; the server is composed in
//! `helix-server`, deploys are driven through the public API like any other
//! client would.

mod builds;
mod domains;
mod env;
mod functions;
mod identity;
mod output;
mod policy;
mod sse;
mod webhooks;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use helix_core::api::{Deployment, GcReport, Rollback};

use helix_client::Api;

/// mimalloc keeps freed pages for reuse: glibc's malloc returns large blocks
/// to the kernel at once, and each deploy-time compression then paid page
/// faults for fresh encoder tables (78% of a deploy's CPU in the kernel).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use helix_client::deploy::{self, DeployArgs};

#[derive(Parser)]
#[command(
    name = "helix",
    version,
    about = "HelixStack: deploy sites to immutable URLs, serve them fast, roll back instantly"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct ClientArgs {
    /// The HelixStack API.
    #[arg(long, env = "HELIX_API_URL", default_value = "http://127.0.0.1:7070", global = true)]
    api_url: String,
    /// API token (default: the one `helix login` saved for this API, else
    /// `admin.token` in the data directory).
    #[arg(long, env = "HELIX_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Args, Clone)]
struct ServerArgs {
    /// Where state, blobs and the admin token live.
    #[arg(long, env = "HELIX_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[arg(long, env = "HELIX_BASE_DOMAIN", default_value = "localhost")]
    base_domain: String,
    /// `sqlite://…` or `postgres://…` (default: SQLite in the data directory).
    #[arg(long, env = "HELIX_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    #[command(flatten)]
    api: helix_server::ApiSettings,
    #[command(flatten)]
    edge: helix_server::EdgeSettings,
    #[command(flatten)]
    runtime: helix_server::RuntimeSettings,
    /// Builds run at once (0: this server runs no builds).
    #[arg(long, env = "HELIX_BUILD_WORKERS", default_value_t = 1)]
    build_workers: usize,
    /// A build's time limit, in seconds.
    #[arg(long, env = "HELIX_BUILD_TIMEOUT_SECS", default_value_t = 1200)]
    build_timeout_secs: u64,
    /// Memory a build step may use, in MiB.
    #[arg(long, env = "HELIX_BUILD_MEMORY_MIB", default_value_t = 4096)]
    build_memory_mib: u64,
    /// CPUs a build step may use, e.g. 1.5 (default: all but half of one).
    /// Steps also run below the server's priority.
    #[arg(long, env = "HELIX_BUILD_CPUS", value_parser = parse_cpus)]
    build_cpus: Option<u64>,
}

/// `1.5` CPUs → 1500 thousandths.
fn parse_cpus(s: &str) -> Result<u64, String> {
    match s.trim().parse::<f64>() {
        Ok(cpus) if cpus.is_finite() && (0.01..=4096.0).contains(&cpus) => Ok((cpus * 1000.0).round() as u64),
        _ => Err(format!("{s:?} is not a number of CPUs from 0.01 up (e.g. 1.5)")),
    }
}

/// How a project's routing files are read.
#[derive(Args, Clone)]
struct RoutingArgs {
    /// The directory to publish, relative to DIR (default: what
    /// netlify.toml or wrangler.toml names, else DIR itself).
    #[arg(long)]
    publish_dir: Option<PathBuf>,
    /// Whose routing semantics apply: netlify, cloudflare-pages, vercel or helix (default: detected).
    #[arg(long)]
    compat: Option<String>,
    /// Fail when any routing rule cannot be honored exactly.
    #[arg(long)]
    strict: bool,
}

#[derive(Subcommand)]
enum RoutesCommand {
    /// Compile DIR's routing files and print the rules and what cannot be honored, without deploying.
    Check {
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        routing: RoutingArgs,
        /// Print machine-readable JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SplitCommand {
    /// Split production traffic: `DEPLOYMENT=PERCENT …` (`production` names the current one); sticky per visitor.
    Set {
        #[arg(long)]
        project: String,
        #[arg(required = true)]
        weights: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the project's split.
    Show {
        #[arg(long)]
        project: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// End the split: production serves its deployment alone again.
    Clear {
        #[arg(long)]
        project: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run the control API, the edge and the bus in one process.
    Server(ServerArgs),
    /// Start a server (or use the one running), deploy DIR to production, serve until Ctrl-C.
    Up {
        dir: PathBuf,
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        routing: RoutingArgs,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Deploy a project directory to its own immutable URL.
    Deploy {
        dir: PathBuf,
        #[command(flatten)]
        routing: RoutingArgs,
        /// Project name (default: the directory's name).
        #[arg(long)]
        project: Option<String>,
        /// Make it production once ready.
        #[arg(long)]
        prod: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a project's deployments, newest first.
    Deployments {
        #[arg(long)]
        project: String,
        /// How many (1–1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Only those older than this deployment (the next page).
        #[arg(long)]
        before: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Point production at a deployment.
    Promote {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Point production back at the previous production deployment (or --to).
    Rollback {
        #[arg(long)]
        project: String,
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Traffic splits between deployments (A/B tests).
    #[command(subcommand)]
    Split(SplitCommand),
    /// Routing rules: check how a project's files compile.
    #[command(subcommand)]
    Routes(RoutesCommand),
    /// Projects: the ones this token can see, and their git links.
    #[command(subcommand)]
    Projects(builds::ProjectsCommand),
    /// Build a linked project's branch now (default: its production branch).
    Build(builds::BuildArgs),
    /// A project's builds (`--project`), or one build's logs, or cancel one.
    Builds(builds::BuildsArgs),
    /// What a project's functions printed, tagged with request id (`-f` follows).
    Logs(functions::LogsArgs),
    /// A project's functions: instances, calls, cold starts, queueing, errors.
    Functions(functions::FunctionsArgs),
    /// A project's schedules (vercel.json `crons`, Netlify scheduled functions): next and last runs.
    Crons(functions::FunctionsArgs),
    /// Save a token for this API (from `helix tokens create`) so later commands use it.
    Login(identity::LoginArgs),
    /// Forget the token `helix login` saved for this API.
    Logout {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Who the token you use is: user, organisation, role, scope.
    Whoami {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// API tokens: create (scoped, expiring, read-only), list, revoke.
    #[command(subcommand)]
    Tokens(identity::TokensCommand),
    /// Members of your organisation and their roles (owner, admin, developer, viewer).
    #[command(subcommand)]
    Members(identity::MembersCommand),
    /// Organisations: list yours, or create one (server admin).
    Orgs(identity::OrgsArgs),
    /// A project's environment variables and secrets: set, list, rm, pull, import.
    Env(env::EnvArgs),
    /// The master key that wraps every project's secrets: rotate it.
    #[command(subcommand)]
    Keys(env::KeysCommand),
    /// The organisation's Rego policy, evaluated at every decision: set, show, test, rm.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// A project's outgoing webhooks (signed, retried): add, list, rm, deliveries.
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCommand),
    /// Custom domains: add (says what DNS record proves it), verify, list, rm.
    #[command(subcommand)]
    Domains(domains::DomainsCommand),
    /// The tamper-evident audit log (`-f` follows); `helix audit verify` checks its hash chain.
    Audit(identity::AuditArgs),
    /// Delete blobs no deployment references.
    Gc {
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn main() {
    let cli = Cli::parse();
    init_tracing(if matches!(cli.command, Command::Server(_)) { "warn,helix=info,helix_server=info" } else { "warn" });
    // One TLS provider for the whole process (ring: no C toolchain needed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        fail(&e);
    }
}

fn fail(e: &anyhow::Error) -> ! {
    eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
    std::process::exit(1);
}

/// Logs go to stderr; `HELIX_LOG` (an `EnvFilter`) overrides `default`.
fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HELIX_LOG").unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server(args) => {
            let running = helix_server::start(server_config(&args)?).await?;
            eprintln!(
                "helix server: API http://{} · edge http://{} (sites at {})",
                running.api_addr,
                running.edge_addr,
                running.public_edge.url_for_host(&format!("*.{}", running.public_edge.base_domain))
            );
            wait_for_ctrl_c().await;
            running.shutdown().await;
            Ok(())
        }
        Command::Up { dir, project, routing, server, client } => {
            up(&dir, project.as_deref(), &routing, &server, &client).await
        }
        Command::Deploy { dir, routing, project, prod, client } => {
            let api = api(&client)?;
            let report = deploy::deploy(&api, deploy_args(&dir, project.as_deref(), prod, &routing, &client)).await?;
            if client.json {
                print_json(&report)
            } else {
                output::print_human(&report)
            }
            Ok(())
        }
        Command::Deployments { project, limit, before, client } => {
            let before = before.map(|b| format!("&before={b}")).unwrap_or_default();
            let path = format!("/api/v1/projects/{project}/deployments?limit={limit}{before}");
            let list: Vec<Deployment> = api(&client)?.get(&path).await?;
            if client.json {
                print_json(&list);
            } else {
                for d in &list {
                    let mark = if d.production { "* production" } else { "" };
                    println!(
                        "{}  {:>6} files  {:>9}  {}  {mark}",
                        d.id,
                        d.file_count,
                        output::human_bytes(d.total_bytes),
                        d.url
                    );
                }
            }
            Ok(())
        }
        Command::Promote { id, client } => {
            let d: Deployment =
                api(&client)?.post(&format!("/api/v1/deployments/{id}/promote"), &serde_json::json!({})).await?;
            pointer_moved(&client, "promoted", &d);
            Ok(())
        }
        Command::Rollback { project, to, client } => {
            let d: Deployment =
                api(&client)?.post(&format!("/api/v1/projects/{project}/rollback"), &Rollback { to }).await?;
            pointer_moved(&client, "rolled back to", &d);
            Ok(())
        }
        Command::Routes(RoutesCommand::Check { dir, routing, json }) => routes_check(&dir, &routing, json),
        Command::Split(cmd) => split(cmd).await,
        Command::Projects(cmd) => builds::projects(cmd).await,
        Command::Build(args) => builds::build(args).await,
        Command::Builds(args) => builds::builds(args).await,
        Command::Logs(args) => functions::logs(args).await,
        Command::Functions(args) => functions::functions(args).await,
        Command::Crons(args) => functions::crons(args).await,
        Command::Login(args) => identity::login(args).await,
        Command::Logout { client } => identity::logout(client).await,
        Command::Whoami { client } => identity::whoami(client).await,
        Command::Tokens(cmd) => identity::tokens(cmd).await,
        Command::Members(cmd) => identity::members(cmd).await,
        Command::Orgs(args) => identity::orgs(args).await,
        Command::Audit(args) => identity::audit(args).await,
        Command::Env(args) => env::env(args).await,
        Command::Policy(cmd) => policy::policy(cmd).await,
        Command::Webhooks(cmd) => webhooks::webhooks(cmd).await,
        Command::Domains(cmd) => domains::domains(cmd).await,
        Command::Keys(cmd) => env::keys(cmd).await,
        Command::Gc { client } => {
            let r: GcReport = api(&client)?.post("/api/v1/gc", &serde_json::json!({})).await?;
            if client.json {
                print_json(&r);
            } else {
                println!(
                    "✔ deleted {} blobs ({}) · {} abandoned uploads",
                    r.blobs_deleted,
                    output::human_bytes(r.bytes_freed),
                    r.abandoned_deployments
                );
            }
            Ok(())
        }
    }
}

fn deploy_args<'a>(
    dir: &'a Path,
    project: Option<&'a str>,
    production: bool,
    routing: &'a RoutingArgs,
    client: &ClientArgs,
) -> DeployArgs<'a> {
    DeployArgs {
        dir,
        publish_dir: routing.publish_dir.as_deref(),
        project,
        production,
        compat: routing.compat.as_deref(),
        strict: routing.strict,
        alias: None,
        function_dirs: Vec::new(),
        context: None,
        branch: None,
        show_progress: show_progress(client),
    }
}

async fn split(cmd: SplitCommand) -> anyhow::Result<()> {
    let (client, split): (ClientArgs, helix_core::api::Split) = match cmd {
        SplitCommand::Set { project, weights, client } => {
            let mut parsed = std::collections::BTreeMap::new();
            for w in &weights {
                let (id, percent) = w.split_once('=').with_context(|| format!("{w:?} is not DEPLOYMENT=PERCENT"))?;
                let percent: u32 =
                    percent.parse().with_context(|| format!("{w:?}: {percent:?} is not a whole percent"))?;
                parsed.insert(id.to_owned(), percent);
            }
            let body = helix_core::api::SetSplit { weights: parsed };
            let split = api(&client)?.put(&format!("/api/v1/projects/{project}/split"), &body).await?;
            (client, split)
        }
        SplitCommand::Show { project, client } => {
            let split = api(&client)?.get(&format!("/api/v1/projects/{project}/split")).await?;
            (client, split)
        }
        SplitCommand::Clear { project, client } => {
            let split = api(&client)?.delete(&format!("/api/v1/projects/{project}/split")).await?;
            (client, split)
        }
    };
    if client.json {
        print_json(&split);
    } else if split.weights.is_empty() {
        println!("✔ {}: production is not split", split.project);
    } else {
        println!("✔ {}: production split", split.project);
        for (id, weight) in &split.weights {
            println!("  {id}  {weight:>3}%");
        }
    }
    output::warn_if_unserved(split.propagation.as_ref());
    Ok(())
}

/// `helix routes check`: compile locally, print, fail on what the platform
/// would refuse (or, with `--strict`, on anything not honored).
fn routes_check(dir: &Path, routing: &RoutingArgs, json: bool) -> anyhow::Result<()> {
    let project = deploy::project(dir, routing.publish_dir.as_deref())?;
    let mut files = helix_config::ProjectFiles { root: project.config, ..Default::default() };
    for name in helix_config::PUBLISH_CONFIG_FILES {
        let path = project.publish.join(name);
        if path.is_file() {
            files.publish.insert(
                (*name).to_owned(),
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
            );
        }
    }
    let compat = match routing.compat.as_deref() {
        Some(c) => Some(
            helix_core::routes::Platform::parse(c)
                .with_context(|| format!("compat {c:?} is not one of {}", helix_core::routes::Platform::NAMES))?,
        ),
        None => None,
    };
    let compiled = helix_config::compile(&files, compat);
    if json {
        print_json(&serde_json::json!({
            "platform": compiled.table.platform,
            "reason": compiled.reason,
            "redirects": compiled.source.redirects,
            "rewrites": compiled.source.rewrites,
            "headers": compiled.source.headers,
            "compiled": compiled.table,
            "diagnostics": compiled.diagnostics,
        }));
    } else {
        println!("platform: {}", compiled.reason);
        for r in compiled.source.redirects.iter().chain(&compiled.source.rewrites) {
            let force =
                if r.force && compiled.table.platform == helix_core::routes::Platform::Netlify { "!" } else { "" };
            println!("  {}:{}  {} → {} {}{force}", r.origin.file, r.origin.line, r.from, r.to, r.status);
        }
        for h in &compiled.source.headers {
            let names: Vec<&str> = h.set.iter().map(|(n, _)| n.as_str()).collect();
            println!("  {}:{}  {} headers: {}", h.origin.file, h.origin.line, h.path, names.join(", "));
        }
        for d in &compiled.diagnostics {
            println!("  {d}");
        }
    }
    if compiled.rejected() {
        anyhow::bail!("the platform would refuse these routing files");
    }
    if routing.strict && !compiled.diagnostics.is_empty() {
        anyhow::bail!("{} rule(s) cannot be honored exactly (--strict)", compiled.diagnostics.len());
    }
    Ok(())
}

async fn up(
    dir: &Path,
    project: Option<&str>,
    routing: &RoutingArgs,
    server: &ServerArgs,
    client: &ClientArgs,
) -> anyhow::Result<()> {
    let existing = Api::new(&client.api_url, None)?;
    if existing.healthy().await {
        let api = api(client)?;
        let report = deploy::deploy(&api, deploy_args(dir, project, true, routing, client)).await?;
        if client.json {
            print_json(&report)
        } else {
            output::print_human(&report)
        }
        eprintln!("(deployed to the server already running at {})", api.base());
        return Ok(());
    }
    // Fail on a bad directory before starting anything.
    deploy::project_name(dir, project)?;
    let running = helix_server::start(server_config(server)?).await?;
    let api = Api::new(&format!("http://{}", running.api_addr), Some(running.admin_token.clone()))?;
    let deployed = deploy::deploy(&api, deploy_args(dir, project, true, routing, client)).await;
    let report = match deployed {
        Ok(r) => r,
        Err(e) => {
            running.shutdown().await;
            return Err(e);
        }
    };
    if client.json {
        print_json(&report);
    } else {
        output::print_human(&report);
        println!("Serving until Ctrl-C (API http://{}).", running.api_addr);
    }
    wait_for_ctrl_c().await;
    running.shutdown().await;
    Ok(())
}

fn server_config(args: &ServerArgs) -> anyhow::Result<helix_server::Config> {
    let mut config = helix_server::Config::new(data_dir(args.data_dir.as_deref())?);
    config.base_domain = args.base_domain.trim_end_matches('.').to_ascii_lowercase();
    config.database_url = args.database_url.clone();
    config.api = args.api.clone();
    config.edge = args.edge.clone();
    config.runtime = args.runtime.clone();
    config.build_workers = args.build_workers;
    config.build.timeout = Duration::from_secs(args.build_timeout_secs);
    config.build.limits.memory_bytes = args.build_memory_mib << 20;
    if let Some(cpus) = args.build_cpus {
        config.build.limits.cpu_millis = cpus;
    }
    Ok(config)
}

/// `--data-dir`/`HELIX_DATA_DIR`, else `~/.helix`.
fn data_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(d) = given {
        return Ok(d.to_owned());
    }
    let home = std::env::var_os("HOME").context("HOME is not set; pass --data-dir or set HELIX_DATA_DIR")?;
    Ok(PathBuf::from(home).join(".helix"))
}

fn api(client: &ClientArgs) -> anyhow::Result<Api> {
    let token = match &client.token {
        Some(t) => Some(t.clone()),
        None => match identity::saved_token(&client.api_url) {
            Some(saved) => Some(saved),
            None => {
                let dir = data_dir(std::env::var_os("HELIX_DATA_DIR").map(PathBuf::from).as_deref())?;
                std::fs::read_to_string(dir.join("admin.token")).ok().map(|t| t.trim().to_owned())
            }
        },
    };
    Api::new(&client.api_url, token)
}

fn show_progress(client: &ClientArgs) -> bool {
    !client.json && std::io::stderr().is_terminal()
}

fn pointer_moved(client: &ClientArgs, verb: &str, d: &Deployment) {
    if client.json {
        print_json(d);
    } else {
        println!("✔ {} {verb} {}", d.project, d.id);
        if let Some(p) = &d.production_url {
            println!("  production: {p}");
        }
    }
    output::warn_if_unserved(d.propagation.as_ref());
}

fn print_json<T: serde::Serialize>(value: &T) {
    println!("{}", serde_json::to_string_pretty(value).expect("plain data serializes"));
}

async fn wait_for_ctrl_c() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

#[cfg(test)]
mod tests {
    /// Every flag of every plane flattened into one command: clap checks
    /// names and ids are unique only when asked.
    #[test]
    fn the_command_line_is_well_formed() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
