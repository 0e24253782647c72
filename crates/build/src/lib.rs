//! The build plane (DESIGN.md §7): workers that take `build.requested`
//! jobs from the queue, fetch the source with git, plan the build with the
//! buildpacks, run install and build steps in a bubblewrap sandbox with the
//! project's caches, and deploy the output through the API exactly as
//! `helix deploy` does.
//!
//! It never touches the state store or the control plane's crates: jobs
//! come from a [`helix_bus::JobQueue`], logs and findings go to a
//! [`BuildHost`], and the deployment is made over HTTP with
//! [`helix_client`]. Secrets never enter a job; a fork's pull request never
//! sees them.

pub mod cache;
pub mod confine;
pub mod log;
pub mod plan;
pub mod sandbox;
pub mod source;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use helix_bus::{ClaimedJob, JobQueue, JobStatus};
use helix_core::build::{BuildContext, BuildId, BuildJob, BuildOutcome, BuildState};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cache::ProjectCache;
use crate::log::{Line, LogSink};
use crate::plan::{PackageManager, Plan};
use crate::sandbox::{SandboxLimits, Step, StepEnd};

/// What a worker needs from the server it works for.
pub trait BuildHost: Send + Sync + 'static {
    /// Stores log lines, with the log's running size and whether it was cut.
    fn append_log<'a>(
        &'a self,
        build: &'a BuildId,
        lines: Vec<Line>,
        total_bytes: u64,
        truncated: bool,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
    /// The sequence number of the build's last stored log line (an earlier
    /// attempt's), 0 for none: a new attempt's lines follow it.
    fn log_end<'a>(&'a self, build: &'a BuildId) -> BoxFuture<'a, anyhow::Result<i64>>;
    /// Records the exact commit and what was detected.
    fn note<'a>(
        &'a self,
        build: &'a BuildId,
        commit: Option<&'a str>,
        detected: Option<&'a str>,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
    /// The project's git token or deploy key, if it has one.
    fn git_credential<'a>(&'a self, project: &'a str) -> BoxFuture<'a, anyhow::Result<Option<String>>>;
    /// The URL the build's deployment will be served at.
    fn deploy_url(&self, job: &BuildJob) -> String;
    /// The project's environment variables for this build (name, value,
    /// whether it is a secret), decrypted. Asked only for trusted builds.
    fn environment<'a>(&'a self, job: &'a BuildJob) -> BoxFuture<'a, anyhow::Result<Vec<(String, String, bool)>>>;
    /// An API client allowed to create this job's one deployment (and
    /// nothing else).
    fn api<'a>(&'a self, job: &'a BuildJob) -> BoxFuture<'a, anyhow::Result<helix_client::Api>>;
}

#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// Workspaces are made (and removed) here.
    pub work_dir: PathBuf,
    /// Per-project caches; on the same file system as `work_dir`.
    pub cache_dir: PathBuf,
    /// Builds at once.
    pub concurrency: usize,
    /// Whole-build time limit.
    pub timeout: Duration,
    pub limits: SandboxLimits,
    pub max_log_bytes: u64,
    /// How often a running build renews its lease.
    pub heartbeat: Duration,
}

impl WorkerSettings {
    pub fn new(data_dir: &Path) -> Self {
        WorkerSettings {
            work_dir: data_dir.join("builds"),
            cache_dir: data_dir.join("build-cache"),
            concurrency: 1,
            timeout: Duration::from_secs(20 * 60),
            limits: SandboxLimits::default(),
            max_log_bytes: 4 << 20,
            heartbeat: Duration::from_secs(5),
        }
    }
}

/// Runs `settings.concurrency` workers until the process ends.
pub fn spawn_workers(
    settings: WorkerSettings,
    queue: Arc<dyn JobQueue>,
    host: Arc<dyn BuildHost>,
) -> Vec<tokio::task::JoinHandle<()>> {
    // Workspaces left by a process that died mid-build are nobody's now;
    // their builds start again in new ones.
    if let Err(e) = std::fs::remove_dir_all(&settings.work_dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %settings.work_dir.display(), error = %e, "could not clear old build workspaces");
    }
    let settings = Arc::new(settings);
    (0..settings.concurrency.max(1))
        .map(|_| tokio::spawn(worker(settings.clone(), queue.clone(), host.clone())))
        .collect()
}

async fn worker(settings: Arc<WorkerSettings>, queue: Arc<dyn JobQueue>, host: Arc<dyn BuildHost>) {
    loop {
        match queue.claim().await {
            Ok(Some(claimed)) => {
                let (build, attempt) = (claimed.job.build.clone(), claimed.attempt);
                // A panic in one build must not take the worker (or the
                // build's state) with it.
                // And when the worker is stopped, its build stops with it.
                let mut run =
                    AbortOnDrop(tokio::spawn(run_job(settings.clone(), queue.clone(), host.clone(), claimed)));
                if let Err(e) = (&mut run.0).await
                    && e.is_panic()
                {
                    tracing::error!(%build, "build worker panicked");
                    let _ = queue.retry(&build, attempt, "the build worker crashed").await;
                }
            }
            Ok(None) => queue.wait().await,
            Err(e) => {
                tracing::warn!(error = %e, "build queue unavailable");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// Aborts a task when dropped (also when the owner unwinds).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Heartbeats that fail in a row before a worker assumes it lost its lease.
const MAX_MISSED_HEARTBEATS: u32 = 3;

/// Why a build did not produce a deployment.
enum Failure {
    /// The build itself failed: recorded, not retried.
    Build {
        step: &'static str,
        message: String,
        exit_status: Option<i64>,
    },
    /// Something under the build failed: retried.
    Infra(String),
    Canceled,
}

impl Failure {
    fn build(step: &'static str, message: impl Into<String>) -> Failure {
        Failure::Build { step, message: message.into(), exit_status: None }
    }
}

async fn run_job(
    settings: Arc<WorkerSettings>,
    queue: Arc<dyn JobQueue>,
    host: Arc<dyn BuildHost>,
    claimed: ClaimedJob,
) {
    let settings = &*settings;
    let ClaimedJob { job, attempt } = claimed;
    let build = job.build.clone();
    tracing::info!(%build, project = %job.project, attempt, "build started");
    let prepared = async {
        // A fork's pull request gets no credential and no variables.
        let (credential, project_env) = if job.context.trusted() {
            (host.git_credential(job.project.as_str()).await?, host.environment(&job).await?)
        } else {
            (None, Vec::new())
        };
        let after_seq = host.log_end(&build).await?;
        anyhow::Ok((credential, project_env, after_seq))
    };
    let (credential, project_env, after_seq) = match prepared.await {
        Ok(p) => p,
        Err(e) => {
            let _ = queue.retry(&build, attempt, &format!("preparing the build: {e}")).await;
            return;
        }
    };
    let secrets: Vec<String> = credential
        .iter()
        .cloned()
        .chain(project_env.iter().filter(|(_, _, secret)| *secret).map(|(_, value, _)| value.clone()))
        .collect();
    let project_env: Vec<(String, String)> = project_env.into_iter().map(|(k, v, _)| (k, v)).collect();
    let (log, flusher) = LogSink::open(host.clone(), build.clone(), secrets, settings.max_log_bytes, after_seq);

    // Renew the lease; stop when the build is canceled, superseded or taken
    // over, or when the lease cannot be renewed for a while.
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let _heartbeat = {
        let queue = queue.clone();
        let build = build.clone();
        let every = settings.heartbeat;
        AbortOnDrop(tokio::spawn(async move {
            let mut missed = 0;
            loop {
                tokio::time::sleep(every).await;
                match queue.heartbeat(&build, attempt).await {
                    Ok(JobStatus::Wanted) => missed = 0,
                    Ok(JobStatus::Canceled) => break,
                    Err(e) => {
                        missed += 1;
                        tracing::warn!(%build, error = %e, missed, "could not renew the build's lease");
                        if missed >= MAX_MISSED_HEARTBEATS {
                            break;
                        }
                    }
                }
            }
            let _ = cancel_tx.send(true);
        }))
    };

    // One directory per attempt: a stale attempt never shares it.
    let workspace = settings.work_dir.join(format!("{build}-{attempt}"));
    let deadline = Instant::now() + settings.timeout;
    let started = std::time::Instant::now();
    let result = execute(Run {
        settings,
        host: &host,
        job: &job,
        attempt,
        credential: credential.as_deref(),
        project_env: &project_env,
        workspace: &workspace,
        deadline,
        cancel: cancel_rx,
        log: &log,
    })
    .await;
    drop(_heartbeat);
    match &result {
        Ok(id) => log.line(&format!(
            "done in {:.1} s: deployment {id} at {}",
            started.elapsed().as_secs_f64(),
            host.deploy_url(&job)
        )),
        Err(Failure::Build { step, message, .. }) => log.line(&format!("build failed in step {step}: {message}")),
        Err(Failure::Infra(message)) => log.line(&format!(
            "infrastructure failure, not the build's (it is tried again up to the attempt limit): {message}"
        )),
        Err(Failure::Canceled) => log.line("canceled"),
    }
    let masked = |message: String| log.mask(&message);
    let result = result.map_err(|f| match f {
        Failure::Build { step, message, exit_status } => Failure::Build { step, message: masked(message), exit_status },
        Failure::Infra(message) => Failure::Infra(masked(message)),
        Failure::Canceled => Failure::Canceled,
    });
    drop(log);
    flusher.close().await;
    let _ = tokio::fs::remove_dir_all(&workspace).await;

    let outcome = match result {
        Ok(deployment) => BuildOutcome {
            state: BuildState::Ready,
            deployment: Some(deployment),
            error: None,
            failed_step: None,
            exit_status: None,
        },
        Err(Failure::Build { step, message, exit_status }) => BuildOutcome {
            state: BuildState::Error,
            deployment: None,
            error: Some(message),
            failed_step: Some(step.to_owned()),
            exit_status,
        },
        Err(Failure::Infra(message)) => {
            tracing::warn!(%build, error = %message, "build hit an infrastructure failure");
            if let Err(e) = queue.retry(&build, attempt, &message).await {
                tracing::error!(%build, error = %e, "could not put the build back on the queue");
            }
            return;
        }
        Err(Failure::Canceled) => return,
    };
    tracing::info!(%build, state = outcome.state.as_str(), "build finished");
    if let Err(e) = queue.complete(&build, attempt, &outcome).await {
        tracing::error!(%build, error = %e, "could not record the build's end");
    }
}

/// One attempt of one build, as `execute` needs it.
struct Run<'a> {
    settings: &'a WorkerSettings,
    host: &'a Arc<dyn BuildHost>,
    job: &'a BuildJob,
    attempt: u32,
    credential: Option<&'a str>,
    /// The project's variables (secrets decrypted): under the config's.
    project_env: &'a [(String, String)],
    workspace: &'a Path,
    deadline: Instant,
    cancel: watch::Receiver<bool>,
    log: &'a LogSink,
}

async fn execute(run: Run<'_>) -> Result<String, Failure> {
    let Run { settings, host, job, attempt, credential, project_env, workspace, deadline, cancel, log } = run;
    let what = match &job.context {
        BuildContext::Production => "production".to_owned(),
        BuildContext::Branch => format!("branch preview of {}", job.git_ref),
        BuildContext::PullRequest { number, fork } => {
            format!("preview of pull request #{number}{}", if *fork { " (from a fork: no secrets)" } else { "" })
        }
    };
    log.line(&format!("build {} of {}: {what}, attempt {attempt}", job.build, job.project));
    let _ = tokio::fs::remove_dir_all(workspace).await;
    let src = workspace.join("src");

    // Fetch. A push builds only the branch's tip: a replayed old delivery
    // must not roll a branch (or production) back.
    let fetch = source::Fetch {
        repo: &job.repo,
        git_ref: &job.git_ref,
        commit: job.commit.as_deref(),
        must_be_tip: !matches!(job.context, BuildContext::PullRequest { .. }),
        credential,
    };
    let commit = source::fetch(&fetch, &src, deadline, log).await.map_err(|e| {
        if e.is_transient() { Failure::Infra(e.to_string()) } else { Failure::build("fetch", e.to_string()) }
    })?;
    log.line(&format!("checked out {commit}"));
    // Nothing the host reads on the build's behalf may lead out of it.
    confine::no_escaping_symlinks(&src).map_err(|e| Failure::build("fetch", e))?;
    if let Err(e) = host.note(&job.build, Some(&commit), None).await {
        return Err(Failure::Infra(format!("recording the commit: {e}")));
    }

    // Detect.
    let plan = plan::detect(&src).map_err(|e| Failure::build("detect", e.to_string()))?;
    log.line(&format!("detected {}", plan.summary()));
    for (step, cmd) in [("install", &plan.install), ("build", &plan.build)] {
        log.line(&format!("  {step}: {}", cmd.as_deref().unwrap_or("(none)")));
    }
    log.line(&format!("  publish: {}", shown(&plan.base.join(&plan.publish))));
    for f in &plan.functions {
        log.line(&format!("  function sources: {}", shown(&plan.base.join(f))));
    }
    if let Err(e) = host.note(&job.build, None, Some(&plan.summary())).await {
        return Err(Failure::Infra(format!("recording the plan: {e}")));
    }

    // A fork's pull request gets a cache of its own that dies with it: it
    // must not plant dependencies a production build would restore.
    let cache_root = if job.context.trusted() { settings.cache_dir.clone() } else { workspace.join("cache") };
    let cache = ProjectCache::open(&cache_root, job.project.as_str())
        .map_err(|e| Failure::Infra(format!("opening the build cache: {e}")))?;
    if cache.trim(settings.limits.max_workspace_bytes / 2) {
        log.line("the project's download cache was over half the disk limit: cleared");
    }
    helix_sandbox::hand_over(workspace, true).map_err(|e| Failure::Infra(format!("preparing the workspace: {e}")))?;
    helix_sandbox::hand_over(&cache.home(), false).map_err(|e| Failure::Infra(format!("preparing the cache: {e}")))?;
    let env = environment(job, &plan, project_env, &host.deploy_url(job), &commit);
    let base = src.join(&plan.base);
    let in_sandbox = |p: &Path| Path::new("src").join(p);

    // Install, unless the dependencies for this very lockfile are cached.
    let deps_dir = src.join(&plan.install_dir).join("node_modules");
    let deps_key = match (&plan.lockfile, plan.package_manager) {
        (Some(lock), Some(pm)) if pm != PackageManager::Deno => ProjectCache::lockfile_key(&src.join(lock)).ok(),
        _ => None,
    };
    let mut installed = false;
    if let Some(install) = &plan.install {
        let restored = deps_key.as_deref().is_some_and(|key| cache.restore_deps(key, &deps_dir));
        if restored {
            let key = deps_key.as_deref().unwrap_or_default();
            log.line(&format!(
                "install: node_modules restored from the cache for this lockfile ({}); skipped",
                &key[..12]
            ));
            installed = true;
        } else {
            let step = Step {
                name: "install",
                command: install,
                workspace,
                cwd: &in_sandbox(&plan.install_dir),
                cache: &cache.home(),
                env: &env,
            };
            run_step(settings, &step, deadline, cancel.clone(), log).await?;
            installed = true;
        }
    }
    // (After the install step, whose symlinks must not steer the move.)
    let restored: Vec<&str> = plan
        .caches
        .iter()
        .copied()
        .filter(|rel| confine::inside(&src, &base.join(rel)).is_ok())
        .filter(|rel| cache.restore_framework(rel, &base, sandbox_owner()))
        .collect();
    if !restored.is_empty() {
        log.line(&format!("restored framework caches: {}", restored.join(", ")));
    }

    // Build.
    let built = match &plan.build {
        Some(command) => {
            let step = Step {
                name: "build",
                command,
                workspace,
                cwd: &in_sandbox(&plan.base),
                cache: &cache.home(),
                env: &env,
            };
            run_step(settings, &step, deadline, cancel.clone(), log).await
        }
        None => Ok(()),
    };
    // The step may have left symlinks anywhere: every path the host now
    // moves or reads is checked to stay inside the source tree.
    if installed
        && let Some(key) = &deps_key
        && confine::inside(&src, &deps_dir).is_ok()
    {
        cache.save_deps(key, &deps_dir);
    }
    for rel in &plan.caches {
        if confine::inside(&src, &base.join(rel)).is_ok() {
            cache.save_framework(rel, &base);
        }
    }
    built?;

    // Publish.
    let publish = base.join(&plan.publish);
    check_output(&src, &publish).map_err(|m| Failure::build("publish", m))?;
    let read_too = helix_config::ROOT_CONFIG_FILES.iter().map(|name| base.join(name));
    for path in read_too.chain(plan.functions.iter().map(|f| base.join(f))) {
        confine::inside(&src, &path).map_err(|m| Failure::build("publish", m))?;
    }
    if *cancel.borrow() {
        return Err(Failure::Canceled);
    }
    log.line(&format!("deploying {}", shown(&plan.base.join(&plan.publish))));
    let api = host.api(job).await.map_err(|e| Failure::Infra(format!("getting the build's API token: {e:#}")))?;
    let args = helix_client::deploy::DeployArgs {
        dir: &base,
        publish_dir: Some(&plan.publish),
        project: Some(job.project.as_str()),
        production: job.context == BuildContext::Production,
        compat: None,
        strict: false,
        alias: job.context.alias(&job.git_ref, &job.project),
        function_dirs: plan.functions.clone(),
        context: Some(job.context.netlify_name()),
        branch: job.context.context_branch(&job.git_ref),
        show_progress: false,
    };
    match helix_client::deploy::deploy(&api, args).await {
        Ok(report) => {
            log.line(&format!(
                "deployed {} files ({} bytes, {} uploaded)",
                report.files, report.total_bytes, report.uploaded
            ));
            if report.function_sources > 0 {
                log.line(&format!("kept {} function source files with the deployment", report.function_sources));
            }
            if let Some(routes) = &report.routes {
                log.line(&format!(
                    "routing: {} · {} redirects · {} header rules",
                    routes.reason, routes.redirects, routes.headers
                ));
                for d in &routes.diagnostics {
                    log.line(&format!("  {d}"));
                }
            }
            Ok(report.id)
        }
        Err(e) => {
            // The platform not answering, or failing itself, is not the
            // build's fault; a refusal (4xx) or an unreadable output is.
            let unreachable = e.chain().any(|c| c.is::<helix_client::Unreachable>());
            let server_error = e
                .chain()
                .any(|c| c.downcast_ref::<helix_client::ApiFailure>().is_some_and(|f| f.status.is_server_error()));
            if unreachable || server_error {
                Err(Failure::Infra(format!("deploying: {e:#}")))
            } else {
                Err(Failure::build("publish", format!("{e:#}")))
            }
        }
    }
}

async fn run_step(
    settings: &WorkerSettings,
    step: &Step<'_>,
    deadline: Instant,
    cancel: watch::Receiver<bool>,
    log: &LogSink,
) -> Result<(), Failure> {
    log.line(&format!("$ {}", step.command));
    let started = std::time::Instant::now();
    let end = sandbox::run(step, &settings.limits, deadline, cancel, log)
        .await
        .map_err(|e| Failure::Infra(format!("starting the sandbox (is bubblewrap installed?): {e}")))?;
    let name = step.name;
    match end {
        StepEnd::Exited(0) => {
            log.line(&format!("{name} finished in {:.1} s", started.elapsed().as_secs_f64()));
            Ok(())
        }
        StepEnd::Exited(code) => Err(Failure::Build {
            step: name,
            message: format!("`{}` exited with status {code}", step.command),
            exit_status: Some(code as i64),
        }),
        StepEnd::Killed(why) => Err(Failure::build(name, why)),
        StepEnd::Canceled => Err(Failure::Canceled),
    }
}

/// The build's environment: the project's variables, the config's
/// `[build.environment]` over them (as on Netlify), then what every build
/// gets (these win).
fn environment(
    job: &BuildJob,
    plan: &Plan,
    project_env: &[(String, String)],
    deploy_url: &str,
    commit: &str,
) -> Vec<(String, String)> {
    let context = job.context.netlify_name();
    let mut vars: std::collections::BTreeMap<String, String> = project_env.iter().cloned().collect();
    vars.extend(plan.environment.clone());
    if let Some(toml) = &plan.netlify_toml {
        vars.extend(helix_config::netlify::context_environment(
            toml,
            context,
            job.context.context_branch(&job.git_ref),
        ));
    }
    let mut env: Vec<(String, String)> = vars.into_iter().collect();
    let node_bin = Path::new("/workspace/src").join(&plan.base).join("node_modules/.bin");
    let fixed = [
        ("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", node_bin.display())),
        ("HOME", "/cache".into()),
        ("TMPDIR", "/tmp".into()),
        ("LANG", "C.UTF-8".into()),
        ("CI", "true".into()),
        ("HELIX", "true".into()),
        ("HELIX_BUILD_ID", job.build.to_string()),
        ("HELIX_PROJECT", job.project.to_string()),
        ("HELIX_BRANCH", job.git_ref.clone()),
        ("HELIX_COMMIT", commit.to_owned()),
        ("HELIX_CONTEXT", context.into()),
        ("HELIX_DEPLOY_URL", deploy_url.to_owned()),
        // The names Netlify builds see, which many site generators read.
        ("BRANCH", job.git_ref.clone()),
        ("HEAD", job.git_ref.clone()),
        ("COMMIT_REF", commit.to_owned()),
        ("CONTEXT", context.into()),
        ("DEPLOY_URL", deploy_url.to_owned()),
        ("URL", deploy_url.to_owned()),
        // npm, pnpm, yarn, bun and deno keep their download caches under
        // HOME (/cache), so they persist per project.
        ("npm_config_update_notifier", "false".into()),
        ("npm_config_fund", "false".into()),
        ("npm_config_audit", "false".into()),
        ("HUGO_CACHEDIR", "/cache/hugo".into()),
    ];
    for (k, v) in fixed {
        env.retain(|(name, _)| name != k);
        env.push((k.to_owned(), v));
    }
    env
}

/// The output must be a directory inside the source tree (reached through
/// no symlink out of it; the deploy scan refuses symlinks inside it that
/// leave it).
fn check_output(src: &Path, publish: &Path) -> Result<(), String> {
    let shown = publish.strip_prefix(src).unwrap_or(publish).display().to_string();
    std::fs::symlink_metadata(publish)
        .map_err(|_| format!("the publish directory {shown} does not exist after the build"))?;
    confine::inside(src, publish)?;
    if !publish.is_dir() {
        return Err(format!("the publish directory {shown} is not a directory"));
    }
    Ok(())
}

/// Who owns what the host creates in the workspace: `nobody` when the
/// server is root (the sandbox runs as it), else nobody needs changing.
fn sandbox_owner() -> Option<u32> {
    sandbox::is_root().then_some(sandbox::NOBODY)
}

/// A path relative to the repository root, `.` for the root itself.
fn shown(p: &Path) -> String {
    if p.as_os_str().is_empty() { ".".into() } else { p.display().to_string() }
}
