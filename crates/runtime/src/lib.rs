//! The runtime plane (DESIGN.md §6): a deployment's functions run in
//! sandboxed instances of a JavaScript runtime (Node; Bun and Deno when a
//! function asks for them), kept warm in a pool per function.
//!
//! **Instances.** Each is the harness (`harness.mjs`, shipped in the
//! binary) in a `helix-sandbox` sandbox with only `/fn` (the function's
//! files, read-only) and its socket directory bound; the server speaks
//! HTTP/1.1 to it over a Unix socket, streaming both ways. An instance
//! starts as a *spare* — the runtime started, the harness listening, no
//! function — and a cold request only links the deployment's files into
//! its `/fn` and loads the module: the runtime's own start is paid before
//! the request comes. Once given a function an instance serves only it,
//! and dies with it.
//!
//! **Pools.** Per (deployment, function): up to `max_instances`, each
//! taking up to `concurrency` requests at once; a request waits (up to its
//! timeout) when all are busy and no instance may be added. Idle instances
//! stop after `idle_secs` (scale to zero). A global cap bounds the
//! instances of the whole server.
//!
//! **Failures.** A request past its timeout gets 504 and its instance is
//! killed (a loop would hold it forever); an instance that crashes or runs
//! out of memory answers its requests 502; either way the next request
//! gets a fresh instance. Every such event is a log line of the function.

pub mod bundle;
mod instance;
pub mod logs;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use tokio::sync::{Notify, OnceCell};

use futures_util::future::BoxFuture;
use helix_artifacts::BlobStore;
use helix_core::functions::{Function, Runtime as Js, Shape};
use helix_core::{DeploymentId, Digest};

use instance::{Instance, boxed};
pub use logs::{LogQuery, LogRecord, Logs, Owner, Stream};

/// A request body going to a function.
pub type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;
/// A function's response body.
pub type ResponseBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// How long a request may wait for an instance (its start, a queue)
/// before its own time limit begins, at least.
const WAIT_FOR_INSTANCE: Duration = Duration::from_secs(30);

/// Instances that start at once: two per core.
fn parallel_starts() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
}

/// Runs of a failing background function: the first and two retries.
const BACKGROUND_RUNS: u32 = 3;

/// How long after a spare is taken the next one starts.
const SPARE_REFILL_DELAY: Duration = Duration::from_millis(100);

/// The harness, written into the runtime's directory at start.
const HARNESS: &str = include_str!("harness.mjs");

#[derive(Clone, Debug, clap::Args)]
pub struct RuntimeSettings {
    /// Longest a function request may take by default, milliseconds (a
    /// function's own `maxDuration` may ask for up to 15 minutes).
    #[arg(id = "fn_timeout_ms", long = "fn-timeout-ms", env = "HELIX_FN_TIMEOUT_MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Memory per instance by default, MiB.
    #[arg(id = "fn_memory_mib", long = "fn-memory-mib", env = "HELIX_FN_MEMORY_MIB", default_value_t = 1024)]
    pub memory_mib: u64,
    /// Instances per function at most.
    #[arg(id = "fn_max_instances", long = "fn-max-instances", env = "HELIX_FN_MAX_INSTANCES", default_value_t = 4)]
    pub max_instances: usize,
    /// Requests one instance serves at once.
    #[arg(id = "fn_concurrency", long = "fn-concurrency", env = "HELIX_FN_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,
    /// Instances of the whole server at most, spares included (default:
    /// one per 96 MiB of this machine's memory, 16 to 512).
    #[arg(id = "fn_max_total", long = "fn-max-total", env = "HELIX_FN_MAX_TOTAL")]
    pub max_total: Option<usize>,
    /// Memory limits of the whole server's instances summed, MiB (default:
    /// sixteen times this machine's memory: a limit is a ceiling each
    /// cgroup enforces, an idle instance takes some 40 MiB, and the
    /// instance count bounds the rest).
    #[arg(id = "fn_max_memory_mib", long = "fn-max-memory-mib", env = "HELIX_FN_MAX_MEMORY_MIB")]
    pub max_memory_mib: Option<u64>,
    /// Seconds an instance may sit idle before it stops.
    #[arg(id = "fn_idle_secs", long = "fn-idle-secs", env = "HELIX_FN_IDLE_SECS", default_value_t = 300)]
    pub idle_secs: u64,
    /// Seconds before a failed background function's first retry (the
    /// second waits twice as long).
    #[arg(
        id = "fn_background_retry_secs",
        long = "fn-background-retry-secs",
        env = "HELIX_FN_BACKGROUND_RETRY_SECS",
        default_value_t = 60
    )]
    pub background_retry_secs: u64,
    /// Node instances kept started and waiting for a function (and, when
    /// not 0, one of Bun and of Deno once a function has asked for it).
    #[arg(id = "fn_spares", long = "fn-spares", env = "HELIX_FN_SPARES", default_value_t = 2)]
    pub spares: usize,
    /// Largest request body a function receives, bytes.
    #[arg(id = "fn_max_request_bytes", long = "fn-max-request-bytes", env = "HELIX_FN_MAX_REQUEST_BYTES", default_value_t = 6 << 20)]
    pub max_request_bytes: u64,
    /// Largest response a function may send, bytes.
    #[arg(id = "fn_max_response_bytes", long = "fn-max-response-bytes", env = "HELIX_FN_MAX_RESPONSE_BYTES", default_value_t = 20 << 20)]
    pub max_response_bytes: u64,
    /// CPU per instance, thousandths of a CPU.
    #[arg(id = "fn_cpu_millis", long = "fn-cpu-millis", env = "HELIX_FN_CPU_MILLIS", default_value_t = 1000)]
    pub cpu_millis: u64,
    /// Processes and threads per instance.
    #[arg(id = "fn_max_tasks", long = "fn-max-tasks", env = "HELIX_FN_MAX_TASKS", default_value_t = 128)]
    pub max_tasks: u64,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        <RuntimeSettings as clap::FromArgMatches>::from_arg_matches(
            &<RuntimeSettings as clap::Args>::augment_args(clap::Command::new("defaults"))
                .get_matches_from(["defaults"]),
        )
        .expect("the defaults parse")
    }
}

/// One invocation's facts, from the edge.
#[derive(Clone)]
pub struct Call {
    pub deployment: DeploymentId,
    pub project: String,
    pub function: Arc<Function>,
    /// The deployment's function sources (path → blob).
    pub sources: Arc<BTreeMap<String, Digest>>,
    pub request_id: String,
    /// The URL the visitor asked for.
    pub url: String,
    /// Route parameters.
    pub params: Vec<(String, String)>,
    /// The environment the function sees (platform variables and the
    /// project's configured ones), made only when an instance starts:
    /// most requests find a warm one and never pay for it.
    pub env: Environment,
}

/// Makes a call's environment.
pub type Environment = Arc<dyn Fn(&Call) -> Vec<(String, String)> + Send + Sync>;

/// The project's own variables for an instance about to start (secrets
/// decrypted), given the call and the environment it has already: whoever
/// composes the server sets it (the control plane holds them). The call's
/// environment wins over them.
pub type ProjectEnv =
    Arc<dyn Fn(&Call, &[(String, String)]) -> BoxFuture<'static, Result<Vec<(String, String)>, String>> + Send + Sync>;

/// Answers a function's request for the rest of its deployment — Pages'
/// `next()` and `env.ASSETS.fetch()`, a Netlify edge function's
/// `context.next()` — for the deployment and shape of the function that
/// asks (whoever composes the server sets it: the edge).
pub type PassOn =
    Arc<dyn Fn(DeploymentId, Shape, Request<PassOnBody>) -> BoxFuture<'static, Response<ResponseBody>> + Send + Sync>;
/// The body of a request a function passes on.
pub type PassOnBody = http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub settings: RuntimeSettings,
    pub dir: PathBuf,
    pub harness: PathBuf,
    pub logs: Logs,
    pub next_instance: AtomicU64,
    blobs: Arc<dyn BlobStore>,
    pools: Mutex<HashMap<(DeploymentId, String), Arc<Pool>>>,
    spares: Mutex<Vec<Arc<Instance>>>,
    /// Instances alive or starting, spares included, and their memory.
    places: Mutex<Places>,
    /// Wakes requests waiting for a place under the server's caps.
    room: Notify,
    /// Instances starting at once.
    starts: tokio::sync::Semaphore,
    max_total: usize,
    max_memory_mib: u64,
    /// A deployment's function sources, written out once.
    trees: Mutex<HashMap<DeploymentId, Arc<OnceCell<PathBuf>>>>,
    pass_on: std::sync::OnceLock<PassOn>,
    project_env: std::sync::OnceLock<ProjectEnv>,
    /// Runtimes other than node that functions asked for (they get spares).
    other_runtimes: Mutex<Vec<Js>>,
}

/// What the server's instances take under its caps.
#[derive(Default)]
struct Places {
    instances: usize,
    memory_mib: u64,
}

impl Inner {
    fn release(&self, memory_mib: u64) {
        let mut places = self.places.lock().expect("places");
        places.instances = places.instances.saturating_sub(1);
        places.memory_mib = places.memory_mib.saturating_sub(memory_mib);
        drop(places);
        self.room.notify_waiters();
    }
}

/// This machine's memory, MiB (`/proc/meminfo`; 4 GiB when unreadable).
fn machine_memory_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        })
        .map_or(4096, |kb| kb / 1024)
}

/// One function's instances.
struct Pool {
    owner: Owner,
    instances: Mutex<Vec<Arc<Instance>>>,
    starting: AtomicUsize,
    changed: Notify,
    stats: Mutex<PoolStats>,
    last_used: Mutex<Instant>,
}

/// How long a pool with no instances keeps its counters.
const POOL_KEPT: Duration = Duration::from_secs(3600);

/// What `helix functions` shows per function.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct PoolStats {
    pub invocations: u64,
    pub cold_starts: u64,
    /// Cold starts served by a pre-started spare.
    pub spare_starts: u64,
    pub pool_hits: u64,
    /// Requests that waited for a busy instance, and how long in all.
    pub queued: u64,
    pub queue_wait_ms: u64,
    pub timeouts: u64,
    pub crashes: u64,
    pub last_cold_start_ms: u64,
    /// Instances started before any request (on promote).
    pub prewarmed: u64,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct FunctionStats {
    pub project: String,
    pub deployment: String,
    pub function: String,
    pub instances: usize,
    pub inflight: usize,
    #[serde(flatten)]
    pub stats: PoolStats,
}

impl Runtime {
    /// Prepares the runtime's directory under `data_dir` and starts the
    /// spares and the idle reaper.
    pub fn start(settings: RuntimeSettings, data_dir: &Path, blobs: Arc<dyn BlobStore>) -> anyhow::Result<Runtime> {
        let dir = data_dir.join("runtime");
        // Instances and written trees of an earlier run are stale.
        for sub in ["instances", "trees"] {
            let _ = std::fs::remove_dir_all(dir.join(sub));
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let harness = dir.join("harness");
        std::fs::create_dir_all(&harness)?;
        std::fs::write(harness.join("harness.mjs"), HARNESS)?;
        let machine = machine_memory_mib();
        let settings_max_memory = settings.max_memory_mib.unwrap_or(machine * 16);
        let max_total = settings.max_total.unwrap_or((machine / 96).clamp(16, 512) as usize);
        let inner = Arc::new(Inner {
            settings,
            harness,
            dir,
            logs: Logs::default(),
            next_instance: AtomicU64::new(1),
            blobs,
            pools: Mutex::default(),
            spares: Mutex::default(),
            places: Mutex::default(),
            room: Notify::new(),
            starts: tokio::sync::Semaphore::new(parallel_starts()),
            max_total,
            max_memory_mib: settings_max_memory,
            trees: Mutex::default(),
            pass_on: std::sync::OnceLock::new(),
            project_env: std::sync::OnceLock::new(),
            other_runtimes: Mutex::default(),
        });
        let rt = Runtime { inner };
        rt.refill_spares();
        let weak = Arc::downgrade(&rt.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                Runtime { inner }.reap();
            }
        });
        Ok(rt)
    }

    /// Sets who answers functions' requests for the rest of their
    /// deployment (once; later calls are ignored). Without it those
    /// requests are refused.
    pub fn set_pass_on(&self, pass_on: PassOn) {
        let _ = self.inner.pass_on.set(pass_on);
    }

    pub fn set_project_env(&self, project_env: ProjectEnv) {
        let _ = self.inner.project_env.set(project_env);
    }

    pub fn logs(&self) -> &Logs {
        &self.inner.logs
    }

    /// Every pool's counters.
    pub fn stats(&self) -> Vec<FunctionStats> {
        let pools: Vec<Arc<Pool>> = self.inner.pools.lock().expect("pools").values().cloned().collect();
        let mut out: Vec<FunctionStats> = pools
            .iter()
            .map(|p| {
                let instances = p.instances.lock().expect("instances");
                FunctionStats {
                    project: p.owner.project.clone(),
                    deployment: p.owner.deployment.clone(),
                    function: p.owner.function.clone(),
                    instances: instances.len(),
                    inflight: instances.iter().map(|i| i.inflight.load(Ordering::Relaxed)).sum(),
                    stats: p.stats.lock().expect("stats").clone(),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.project, &a.function, &a.deployment).cmp(&(&b.project, &b.function, &b.deployment)));
        out
    }

    /// Instances alive or starting, spares included.
    pub fn instances(&self) -> usize {
        self.inner.places.lock().expect("places").instances
    }

    /// Runs one request through the function; always answers (a 5xx with
    /// the request id when the function could not).
    pub async fn invoke(&self, call: Call, req: Request<Body>) -> Response<ResponseBody> {
        let (parts, body) = req.into_parts();
        let limit = self.inner.settings.max_request_bytes;
        let declared =
            parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &call.request_id,
                "the request body is over the function's limit",
            );
        }
        let body = http_body_util::Limited::new(body, limit as usize).boxed_unsync();
        let req = Request::from_parts(parts, body);
        if call.function.background {
            return Box::pin(self.background(call, req)).await;
        }
        let timeout = Duration::from_millis(call.function.max_duration_ms.unwrap_or(self.inner.settings.timeout_ms));
        self.run(call, req, timeout).await
    }

    /// Netlify's background functions: 202 at once, then run to the end
    /// (up to 15 minutes). The body is read first: the visitor's
    /// connection is done once answered.
    async fn background(&self, call: Call, req: Request<Body>) -> Response<ResponseBody> {
        let (parts, body) = req.into_parts();
        let bytes = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return error(StatusCode::PAYLOAD_TOO_LARGE, &call.request_id, "the request body could not be read");
            }
        };
        let rt = self.clone();
        let timeout =
            Duration::from_millis(call.function.max_duration_ms.unwrap_or(helix_core::functions::MAX_DURATION_MS));
        // A run that fails (a throw, a crash, its time limit) is retried
        // twice, after one and then two retry delays, as on Netlify.
        let delay = Duration::from_secs(self.inner.settings.background_retry_secs);
        tokio::spawn(async move {
            for attempt in 1..=BACKGROUND_RUNS {
                let mut req = Request::new(boxed(Full::new(bytes.clone())));
                *req.method_mut() = parts.method.clone();
                *req.uri_mut() = parts.uri.clone();
                *req.headers_mut() = parts.headers.clone();
                let resp = rt.run(call.clone(), req, timeout).await;
                let status = resp.status();
                let _ = resp.into_body().collect().await;
                if !status.is_server_error() || attempt == BACKGROUND_RUNS {
                    return;
                }
                let wait = delay * attempt;
                let owner = rt.pool(&call).owner.clone();
                let line = format!(
                    "the background run failed ({}); retrying in {} s (run {} of {BACKGROUND_RUNS})",
                    status.as_u16(),
                    wait.as_secs(),
                    attempt + 1
                );
                rt.system(&owner, &call.request_id, &line);
                tokio::time::sleep(wait).await;
            }
        });
        Response::builder()
            .status(StatusCode::ACCEPTED)
            .body(Full::new(Bytes::new()).map_err(|never| match never {}).boxed_unsync())
            .expect("valid response")
    }

    async fn run(&self, call: Call, mut req: Request<Body>, timeout: Duration) -> Response<ResponseBody> {
        // Waiting for an instance (a cold start, a queue) has its own
        // bound; the function's time limit counts from when it gets the
        // request.
        let wait_until = tokio::time::Instant::now() + timeout.max(WAIT_FOR_INSTANCE);
        let pool = self.pool(&call);
        let instance = match self.acquire(&pool, &call, wait_until).await {
            Ok(i) => i,
            Err(Acquire::Busy) => {
                self.system(&pool.owner, &call.request_id, "no instance free before the timeout: 503");
                return error(StatusCode::SERVICE_UNAVAILABLE, &call.request_id, "the function is busy; try again");
            }
            Err(Acquire::Failed(why)) => {
                self.system(&pool.owner, &call.request_id, &format!("the function could not start: {why}"));
                return error(StatusCode::BAD_GATEWAY, &call.request_id, "the function could not start");
            }
        };
        let headers = req.headers_mut();
        let set = |h: &mut http::HeaderMap, name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name, v);
            }
        };
        set(headers, "x-helix-request-id", &call.request_id);
        set(headers, "x-helix-url", &call.url);
        if !call.params.is_empty() {
            let params: serde_json::Map<String, serde_json::Value> =
                call.params.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
            set(headers, "x-helix-params", &serde_json::Value::Object(params).to_string());
        }
        *pool.last_used.lock().expect("last used") = Instant::now();
        // One timer bounds the whole exchange, the response body's
        // streaming included.
        let mut deadline = Box::pin(tokio::time::sleep(timeout));
        let guard = Inflight { instance: instance.clone(), pool: pool.clone() };
        let sent = tokio::select! {
            biased;
            sent = instance.send_keeping(req) => Ok(sent),
            () = deadline.as_mut() => Err(()),
        };
        match sent {
            Ok(Ok((resp, sender))) => {
                let (parts, body) = resp.into_parts();
                let body = Limited {
                    inner: body,
                    left: self.inner.settings.max_response_bytes,
                    deadline,
                    guard: Some((guard, sender)),
                    runtime: self.clone(),
                    request_id: call.request_id.clone(),
                };
                Response::from_parts(parts, body.boxed_unsync())
            }
            Ok(Err(e)) => {
                // The instance died under the request, or closed it: wait
                // (briefly) to learn which.
                instance.wait_dead(Duration::from_millis(500)).await;
                let why = instance.death.lock().expect("death").clone();
                instance.stop();
                pool.stats.lock().expect("stats").crashes += 1;
                let why = why.unwrap_or_else(|| e.to_string());
                self.system(&pool.owner, &call.request_id, &format!("the instance failed: {why}: 502"));
                let msg =
                    if why.contains("memory") { "the function ran out of memory" } else { "the function crashed" };
                error(StatusCode::BAD_GATEWAY, &call.request_id, msg)
            }
            Err(_) => {
                instance.stop();
                pool.stats.lock().expect("stats").timeouts += 1;
                self.system(
                    &pool.owner,
                    &call.request_id,
                    &format!("no response within {} ms: 504; the instance was stopped", timeout.as_millis()),
                );
                error(StatusCode::GATEWAY_TIMEOUT, &call.request_id, "the function did not answer in time")
            }
        }
    }

    /// Starts instances of `call`'s function ahead of its first request
    /// until its pool has `count` (a promote does it with the traffic the
    /// previous production deployment had). Stops at the caps.
    pub async fn prewarm(&self, call: Call, count: usize) {
        let pool = self.pool(&call);
        let memory = call.function.memory_mib.unwrap_or(self.inner.settings.memory_mib);
        let mut started = 0;
        while started < count.min(self.inner.settings.max_instances) {
            let have = pool.instances.lock().expect("instances").len() + pool.starting.load(Ordering::Relaxed);
            if have >= count || !self.reserve(memory) {
                break;
            }
            pool.starting.fetch_add(1, Ordering::Relaxed);
            let result = self.cold_start(&pool, &call).await;
            if let Ok((instance, _)) = &result {
                instance.touch();
                pool.instances.lock().expect("instances").push(instance.clone());
            }
            pool.starting.fetch_sub(1, Ordering::Relaxed);
            pool.changed.notify_waiters();
            match result {
                Ok(_) => started += 1,
                Err(why) => {
                    self.system(&pool.owner, "", &format!("pre-warming failed: {why}"));
                    break;
                }
            }
        }
        if started > 0 {
            pool.stats.lock().expect("stats").prewarmed += started as u64;
            self.system(&pool.owner, "", &format!("pre-warmed {started} instance(s) on promote"));
        }
    }

    fn system(&self, owner: &Owner, request: &str, line: &str) {
        self.inner.logs.push(owner, request, Stream::System, line.to_owned());
    }

    fn pool(&self, call: &Call) -> Arc<Pool> {
        let key = (call.deployment.clone(), call.function.name.clone());
        let mut pools = self.inner.pools.lock().expect("pools");
        pools
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Pool {
                    owner: Owner {
                        project: call.project.clone(),
                        deployment: call.deployment.to_string(),
                        function: call.function.name.clone(),
                    },
                    instances: Mutex::default(),
                    starting: AtomicUsize::new(0),
                    changed: Notify::new(),
                    stats: Mutex::default(),
                    last_used: Mutex::new(Instant::now()),
                })
            })
            .clone()
    }

    /// An instance with room for one more request: a warm one, else a new
    /// one (from a spare when there is one), else the first to free up.
    async fn acquire(
        &self,
        pool: &Arc<Pool>,
        call: &Call,
        deadline: tokio::time::Instant,
    ) -> Result<Arc<Instance>, Acquire> {
        let settings = &self.inner.settings;
        // The common case first, without arming the wake-ups below.
        let warm = self.warm(&mut pool.instances.lock().expect("instances"));
        if let Some(i) = warm {
            Self::served(pool, None);
            return Ok(i);
        }
        let mut waited: Option<Instant> = None;
        loop {
            let changed = pool.changed.notified();
            let room = self.inner.room.notified();
            tokio::pin!(changed, room);
            changed.as_mut().enable();
            room.as_mut().enable();
            let warm = {
                let mut instances = pool.instances.lock().expect("instances");
                let best = self.warm(&mut instances);
                // One instance starts at a time per function: the requests
                // that arrive meanwhile wait for it (it takes `concurrency`
                // of them), and a next one starts only if it fills up.
                let starting = pool.starting.load(Ordering::Relaxed);
                let room = starting == 0 && instances.len() < settings.max_instances;
                match best {
                    Some(i) => Ok(i),
                    None if room && self.reserve(call.function.memory_mib.unwrap_or(settings.memory_mib)) => {
                        pool.starting.fetch_add(1, Ordering::Relaxed);
                        Err(Next::Start)
                    }
                    None if room => Err(Next::MakeRoom),
                    None => Err(Next::Wait),
                }
            };
            match warm {
                Ok(i) => {
                    Self::served(pool, waited);
                    return Ok(i);
                }
                // A place was reserved: start one.
                Err(Next::Start) => {
                    let started = Instant::now();
                    // Boxed: the cold path's future is large, and every
                    // request's future would carry (and move) it.
                    let result = Box::pin(self.cold_start(pool, call)).await;
                    // Counted as starting until it is in the pool: never
                    // neither, so the pool's cap holds.
                    if let Ok((instance, _)) = &result {
                        instance.inflight.fetch_add(1, Ordering::Relaxed);
                        pool.instances.lock().expect("instances").push(instance.clone());
                    }
                    pool.starting.fetch_sub(1, Ordering::Relaxed);
                    pool.changed.notify_waiters();
                    let (instance, spare) = result.map_err(Acquire::Failed)?;
                    let ms = started.elapsed().as_millis() as u64;
                    {
                        let mut stats = pool.stats.lock().expect("stats");
                        stats.invocations += 1;
                        stats.cold_starts += 1;
                        stats.spare_starts += u64::from(spare);
                        stats.last_cold_start_ms = ms;
                    }
                    let how = if spare { "a spare" } else { "a new instance" };
                    self.system(&pool.owner, &call.request_id, &format!("cold start in {ms} ms ({how})"));
                    return Ok(instance);
                }
                // The server is at its cap: the idlest instance elsewhere
                // gives up its place (a spare first).
                Err(Next::MakeRoom) => {
                    if let Some(victim) = self.idlest() {
                        victim.stop();
                        Box::pin(victim.wait_dead(Duration::from_secs(2))).await;
                        continue;
                    }
                }
                Err(Next::Wait) => {}
            }
            waited.get_or_insert_with(Instant::now);
            // An instance of this pool frees up, or a place on the server.
            let freed = async {
                tokio::select! {
                    () = &mut changed => {}
                    () = &mut room => {}
                }
            };
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(Acquire::Busy);
            }
        }
    }

    /// The live instance with the fewest requests, if it has room for one
    /// more; that request is counted on it.
    fn warm(&self, instances: &mut Vec<Arc<Instance>>) -> Option<Arc<Instance>> {
        instances.retain(|i| !i.is_dead());
        let best = instances
            .iter()
            .filter(|i| i.inflight.load(Ordering::Relaxed) < self.inner.settings.concurrency)
            .min_by_key(|i| i.inflight.load(Ordering::Relaxed))
            .cloned()?;
        best.inflight.fetch_add(1, Ordering::Relaxed);
        best.touch();
        Some(best)
    }

    /// Counts a request a warm instance took, after a wait or not.
    fn served(pool: &Pool, waited: Option<Instant>) {
        let mut stats = pool.stats.lock().expect("stats");
        stats.invocations += 1;
        match waited {
            Some(t) => {
                stats.queued += 1;
                stats.queue_wait_ms += t.elapsed().as_millis() as u64;
            }
            None => stats.pool_hits += 1,
        }
    }

    /// Takes a place under the server's caps (instances and memory).
    fn reserve(&self, memory_mib: u64) -> bool {
        let mut places = self.inner.places.lock().expect("places");
        let fits =
            places.instances < self.inner.max_total && places.memory_mib + memory_mib <= self.inner.max_memory_mib;
        if fits {
            places.instances += 1;
            places.memory_mib += memory_mib;
        }
        fits
    }

    fn release(&self, memory_mib: u64) {
        self.inner.release(memory_mib);
    }

    /// A new instance of `call`'s function, loaded; whether it was a spare.
    async fn cold_start(&self, pool: &Arc<Pool>, call: &Call) -> Result<(Arc<Instance>, bool), String> {
        let f = &call.function;
        let memory = f.memory_mib.unwrap_or(self.inner.settings.memory_mib);
        let tree = self.tree(&call.deployment, &call.sources).await.map_err(|e| format!("{e:#}"));
        let tree = match tree {
            Ok(t) => t,
            Err(e) => {
                self.release(memory);
                return Err(e);
            }
        };
        let mut env = (call.env)(call);
        if let Some(project_env) = self.inner.project_env.get() {
            match project_env(call, &env).await {
                Ok(mut vars) => {
                    vars.append(&mut env);
                    env = vars;
                }
                Err(e) => {
                    self.release(memory);
                    return Err(format!("reading the project's environment variables: {e}"));
                }
            }
        }
        if f.runtime != Js::Node {
            let mut others = self.inner.other_runtimes.lock().expect("runtimes");
            if !others.contains(&f.runtime) {
                others.push(f.runtime);
            }
        }
        let spare = self.take_spare(f.runtime, memory);
        let from_spare = spare.is_some();
        let instance = match spare {
            Some(i) => i,
            None => match self.start_instance(f.runtime, memory).await {
                Ok(i) => self.track(i),
                Err(e) => {
                    self.release(memory);
                    return Err(format!("{e:#}"));
                }
            },
        };
        let loaded = instance.load(&tree, f, &env, pool.owner.clone()).await;
        // The next spare starts once this request is on its way (it would
        // compete with it for the CPU).
        let rt = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(SPARE_REFILL_DELAY).await;
            rt.refill_spares();
        });
        if let Err(why) = loaded {
            instance.stop();
            return Err(why);
        }
        let pass_on = matches!(f.shape, Shape::Pages | Shape::NetlifyEdge).then(|| self.inner.pass_on.get()).flatten();
        instance.serve_passed_on(pass_on.cloned(), call.deployment.clone(), f.shape);
        Ok((instance, from_spare))
    }

    /// Starts an instance, a few at a time: starting is CPU-bound (the
    /// sandbox, the runtime), and a burst of them would slow them all.
    async fn start_instance(&self, js: Js, memory_mib: u64) -> anyhow::Result<Arc<Instance>> {
        let _turn = self.inner.starts.acquire().await.expect("never closed");
        Instance::start(&self.inner, js, memory_mib).await
    }

    /// Counts the instance out of the total when it dies.
    fn track(&self, instance: Arc<Instance>) -> Arc<Instance> {
        let inner = Arc::downgrade(&self.inner);
        let exited = instance.exited.clone();
        let dead = instance.dead.clone();
        let memory = instance.memory_mib;
        tokio::spawn(async move {
            let notified = exited.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Set before the notification: seen here, or the notification
            // comes after `enable` and is caught.
            if !dead.load(Ordering::Relaxed) {
                notified.await;
            }
            if let Some(inner) = inner.upgrade() {
                inner.release(memory);
            }
        });
        instance
    }

    /// A spare of the right runtime and memory, if one waits. The place it
    /// held under the cap is handed to the caller's reservation.
    fn take_spare(&self, js: Js, memory_mib: u64) -> Option<Arc<Instance>> {
        let mut spares = self.inner.spares.lock().expect("spares");
        spares.retain(|s| !s.is_dead());
        let i = spares.iter().position(|s| s.js == js && s.memory_mib == memory_mib)?;
        let spare = spares.remove(i);
        // The caller reserved a place; the spare already had one.
        self.release(memory_mib);
        Some(spare)
    }

    /// Starts spares (default memory) up to the configured number of
    /// node ones, and one of each other runtime a function has asked for
    /// (Bun and Deno cost nothing until a project uses them).
    fn refill_spares(&self) {
        let wanted: Vec<(Js, usize)> = std::iter::once((Js::Node, self.inner.settings.spares))
            .chain(
                self.inner
                    .other_runtimes
                    .lock()
                    .expect("runtimes")
                    .iter()
                    .map(|&js| (js, self.inner.settings.spares.min(1))),
            )
            .collect();
        let mut missing = Vec::new();
        {
            let mut spares = self.inner.spares.lock().expect("spares");
            spares.retain(|s| !s.is_dead());
            for (js, want) in wanted {
                let have = spares.iter().filter(|s| s.js == js).count();
                missing.extend(std::iter::repeat_n(js, want.saturating_sub(have)));
            }
        }
        for js in missing {
            if !self.reserve(self.inner.settings.memory_mib) {
                return;
            }
            let rt = self.clone();
            tokio::spawn(async move {
                let memory = rt.inner.settings.memory_mib;
                match rt.start_instance(js, memory).await {
                    Ok(i) => {
                        let i = rt.track(i);
                        rt.inner.spares.lock().expect("spares").push(i);
                    }
                    Err(e) => {
                        rt.release(memory);
                        tracing::warn!("function spare: {e:#}");
                    }
                }
            });
        }
    }

    /// The instance to stop for room: a spare, else the one idle longest
    /// (none while every instance is busy).
    fn idlest(&self) -> Option<Arc<Instance>> {
        let spare = {
            let mut spares = self.inner.spares.lock().expect("spares");
            spares.retain(|s| !s.is_dead());
            spares.pop()
        };
        if spare.is_some() {
            return spare;
        }
        let pools = self.inner.pools.lock().expect("pools");
        pools
            .values()
            .flat_map(|p| p.instances.lock().expect("instances").clone())
            .filter(|i| !i.is_dead() && i.inflight.load(Ordering::Relaxed) == 0)
            .max_by_key(|i| i.idle_for())
    }

    /// Stops instances idle too long, forgets empty pools, and removes
    /// the written sources of deployments no instance runs.
    fn reap(&self) {
        let idle = Duration::from_secs(self.inner.settings.idle_secs);
        let mut pools = self.inner.pools.lock().expect("pools");
        let mut running = std::collections::HashSet::new();
        pools.retain(|(deployment, _), pool| {
            let mut instances = pool.instances.lock().expect("instances");
            instances.retain(|i| {
                let stale = i.inflight.load(Ordering::Relaxed) == 0 && i.idle_for() >= idle;
                if stale {
                    i.stop();
                }
                !stale && !i.is_dead()
            });
            let busy =
                !instances.is_empty() || pool.starting.load(Ordering::Relaxed) > 0 || Arc::strong_count(pool) > 1;
            if busy {
                running.insert(deployment.clone());
            }
            // Counters outlive the instances for an hour (`helix functions`).
            busy || pool.last_used.lock().expect("last used").elapsed() < POOL_KEPT
        });
        drop(pools);
        self.forget_trees(&running);
    }

    /// Removes the written sources of deployments not in `running` (their
    /// instances have their own links to the files; a later cold start
    /// writes them again). Moved aside under the lock, so a tree written
    /// anew meanwhile is never the one removed.
    fn forget_trees(&self, running: &std::collections::HashSet<DeploymentId>) {
        let mut trees = self.inner.trees.lock().expect("trees");
        let gone: Vec<DeploymentId> = trees
            .iter()
            .filter(|(d, cell)| !running.contains(*d) && Arc::strong_count(cell) == 1)
            .map(|(d, _)| d.clone())
            .collect();
        for deployment in gone {
            trees.remove(&deployment);
            let dir = self.inner.dir.join("trees").join(deployment.as_str());
            static REMOVALS: AtomicU64 = AtomicU64::new(0);
            let doomed = dir.with_extension(format!("removing-{}", REMOVALS.fetch_add(1, Ordering::Relaxed)));
            if std::fs::rename(&dir, &doomed).is_ok() {
                tokio::task::spawn_blocking(move || std::fs::remove_dir_all(doomed));
            }
        }
    }

    /// The deployment's function sources on disk (written once).
    async fn tree(&self, deployment: &DeploymentId, sources: &BTreeMap<String, Digest>) -> anyhow::Result<PathBuf> {
        let cell = self.inner.trees.lock().expect("trees").entry(deployment.clone()).or_default().clone();
        let dir = self.inner.dir.join("trees").join(deployment.as_str());
        cell.get_or_try_init(|| async {
            let partial = dir.with_extension("partial");
            let _ = tokio::fs::remove_dir_all(&partial).await;
            for (path, digest) in sources {
                let target = partial.join(path);
                if let Some(parent) = target.parent() {
                    tokio::fs::create_dir_all(parent).await?;
                }
                let bytes = self.inner.blobs.get(*digest).await?;
                tokio::fs::write(&target, &bytes).await?;
            }
            tokio::fs::create_dir_all(&partial).await?;
            let _ = tokio::fs::remove_dir_all(&dir).await;
            tokio::fs::rename(&partial, &dir).await?;
            Ok::<_, anyhow::Error>(dir.clone())
        })
        .await
        .cloned()
    }
}

/// What a request does when no warm instance has room.
enum Next {
    /// A place under the caps is reserved: start an instance.
    Start,
    /// This function may grow but the server is full.
    MakeRoom,
    /// This function is at its own cap: wait for a free instance.
    Wait,
}

enum Acquire {
    /// Every instance stayed busy until the deadline.
    Busy,
    Failed(String),
}

/// A request's hold on its instance, released when its response body ends
/// or is dropped.
struct Inflight {
    instance: Arc<Instance>,
    pool: Arc<Pool>,
}

impl Drop for Inflight {
    fn drop(&mut self) {
        self.instance.inflight.fetch_sub(1, Ordering::Relaxed);
        self.instance.touch();
        self.pool.changed.notify_waiters();
    }
}

/// A function's response body: cut at the size limit and the deadline;
/// hands its connection back when it ends.
struct Limited {
    inner: hyper::body::Incoming,
    left: u64,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    guard: Option<(Inflight, hyper::client::conn::http1::SendRequest<Body>)>,
    runtime: Runtime,
    request_id: String,
}

impl http_body::Body for Limited {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.fail("the response was still streaming at the timeout; cut");
            return Poll::Ready(Some(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "function timeout"))));
        }
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > this.left {
                        this.fail("the response is over the size limit; cut");
                        return Poll::Ready(Some(Err(std::io::Error::other("function response too large"))));
                    }
                    this.left -= n;
                }
                // The last frame: the connection is free once it is read
                // (hyper may not poll again when the size is known).
                if this.inner.is_end_stream() {
                    this.release();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.guard = None;
                Poll::Ready(Some(Err(std::io::Error::other(e))))
            }
            Poll::Ready(None) => {
                this.release();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        // Read to its end but never polled past it.
        if http_body::Body::is_end_stream(&self.inner) {
            self.release();
        }
    }
}

impl Limited {
    /// The response was read whole: its connection goes back for reuse.
    fn release(&mut self) {
        if let Some((guard, sender)) = self.guard.take() {
            guard.instance.give_back(sender);
        }
    }

    /// Ends the response early; the instance is stopped (it would keep
    /// writing into a connection no one reads).
    fn fail(&mut self, why: &str) {
        if let Some((guard, _)) = self.guard.take() {
            guard.instance.stop();
            self.runtime.system(&guard.pool.owner, &self.request_id, why);
        }
    }
}

use std::future::Future;

/// A plain-text error answer carrying the request id.
fn error(status: StatusCode, request_id: &str, message: &str) -> Response<ResponseBody> {
    let body = format!("{} {message} (request {request_id})\n", status.as_u16());
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed_unsync())
        .expect("valid response")
}

/// Boxes any body for [`Runtime::invoke`].
pub fn body<B>(b: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    boxed(b)
}
