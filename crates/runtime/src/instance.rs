//! One function instance: a JavaScript runtime in a sandbox running the
//! harness, spoken to over HTTP/1.1 on a Unix socket. It starts as a spare
//! (no function yet) and is given exactly one function for its life.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{Notify, oneshot};

use helix_core::DeploymentId;
use helix_core::functions::{Function, Runtime as Js, Shape};
use helix_sandbox::{Bind, Limits, Priority};

use crate::logs::{Logs, Owner, Stream};
use crate::{Body, Inner, PassOn};

/// Requests of one instance to its `next` socket answered at once.
const PASS_ON_AT_ONCE: usize = 64;

/// Longest an instance may take from start to listening.
const READY_WITHIN: Duration = Duration::from_secs(10);

pub(crate) struct Instance {
    pub id: u64,
    pub js: Js,
    pub memory_mib: u64,
    dir: PathBuf,
    sock: PathBuf,
    /// The function it was given (its logs are tagged with it).
    owner: Arc<OnceLock<Owner>>,
    pub inflight: AtomicUsize,
    idle: Arc<Mutex<Vec<SendRequest<Body>>>>,
    pub dead: Arc<AtomicBool>,
    /// Why it died, once it did.
    pub death: Arc<Mutex<Option<String>>>,
    pub last_used: Mutex<Instant>,
    kill: Arc<Notify>,
    pub exited: Arc<Notify>,
    /// Where the function's requests for the rest of its deployment come
    /// in (see [`Instance::serve_passed_on`]), until served.
    next: Mutex<Option<UnixListener>>,
}

impl Instance {
    /// Starts a spare: the harness listening, no function loaded.
    pub async fn start(rt: &Arc<Inner>, js: Js, memory_mib: u64) -> anyhow::Result<Arc<Instance>> {
        let id = rt.next_instance.fetch_add(1, Ordering::Relaxed);
        let dir = rt.dir.join("instances").join(id.to_string());
        let (run, code) = (dir.join("run"), dir.join("fn"));
        for d in [&run, &code] {
            std::fs::create_dir_all(d)?;
        }
        // The harness runs as `nobody` when the server is root: it must
        // create its socket in `run`.
        if helix_sandbox::is_root() {
            std::os::unix::fs::chown(&run, Some(helix_sandbox::NOBODY), Some(helix_sandbox::NOBODY))?;
        }
        // The function's requests for the rest of its deployment: a socket
        // the harness (as `nobody`) may connect to.
        let next_sock = run.join("next");
        let next = UnixListener::bind(&next_sock)?;
        std::fs::set_permissions(&next_sock, std::os::unix::fs::PermissionsExt::from_mode(0o666))?;
        let binds = [
            // Directories (bwrap makes a bound file's missing parents 0700).
            Bind { host: rt.harness.clone(), inside: "/helix".into(), writable: false },
            Bind { host: code, inside: "/fn".into(), writable: false },
            Bind { host: run.clone(), inside: "/socket".into(), writable: true },
        ];
        let heap = (memory_mib * 3 / 4).max(64);
        let argv: Vec<String> = match js {
            Js::Node => vec![
                "/usr/bin/env".into(),
                "node".into(),
                format!("--max-old-space-size={heap}"),
                "/helix/harness.mjs".into(),
            ],
            Js::Bun => vec!["/usr/bin/env".into(), "bun".into(), "/helix/harness.mjs".into()],
            Js::Deno => vec![
                "/usr/bin/env".into(),
                "deno".into(),
                "run".into(),
                "--allow-all".into(),
                format!("--v8-flags=--max-old-space-size={heap}"),
                "/helix/harness.mjs".into(),
            ],
        };
        let env = vec![
            ("PATH".to_owned(), "/usr/local/bin:/usr/bin:/bin".to_owned()),
            ("HOME".to_owned(), "/tmp".to_owned()),
            ("TMPDIR".to_owned(), "/tmp".to_owned()),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ("HELIX_SOCKET".to_owned(), "/socket/sock".to_owned()),
            ("HELIX_NEXT_SOCKET".to_owned(), "/socket/next".to_owned()),
            ("HELIX_MAX_BODY".to_owned(), rt.settings.max_request_bytes.to_string()),
            ("DENO_DIR".to_owned(), "/tmp/deno".to_owned()),
            ("DENO_NO_UPDATE_CHECK".to_owned(), "1".to_owned()),
        ];
        let limits = Limits {
            memory_bytes: memory_mib << 20,
            cpu_millis: rt.settings.cpu_millis,
            max_tasks: rt.settings.max_tasks,
            max_file_bytes: 64 << 20,
            max_files: 1024,
            priority: Priority::Serving,
        };
        let spec = helix_sandbox::Spec {
            name: "helix-fn",
            binds: &binds,
            env: &env,
            cwd: Path::new("/fn"),
            argv: &argv,
            limits: &limits,
            wait_for_network: false,
            scratch: dir.join("sandbox"),
        };
        let mut sandbox = helix_sandbox::spawn(&spec).await?;
        for note in &sandbox.notes {
            tracing::warn!(instance = id, "{note}");
        }
        let owner: Arc<OnceLock<Owner>> = Arc::default();
        let (ready_tx, ready_rx) = oneshot::channel();
        let stdout = sandbox.child.stdout.take().expect("piped");
        let stderr = sandbox.child.stderr.take().expect("piped");
        let early: Arc<Mutex<Vec<String>>> = Arc::default();
        let heap_full = Arc::new(AtomicBool::new(false));
        let out = Output {
            logs: rt.logs.clone(),
            owner: owner.clone(),
            early: early.clone(),
            heap_full: heap_full.clone(),
            rate: Arc::default(),
        };
        tokio::spawn(read_lines(stdout, Stream::Stdout, out.clone(), Some(ready_tx)));
        tokio::spawn(read_lines(stderr, Stream::Stderr, out, None));
        let (dead, death, kill, exited) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(Mutex::new(None)),
            Arc::new(Notify::new()),
            Arc::new(Notify::new()),
        );
        tokio::spawn(watch(sandbox, heap_full, dead.clone(), death.clone(), kill.clone(), exited.clone(), dir.clone()));
        let instance = Arc::new(Instance {
            id,
            js,
            memory_mib,
            sock: run.join("sock"),
            dir,
            owner,
            inflight: AtomicUsize::new(0),
            idle: Arc::default(),
            dead,
            death,
            last_used: Mutex::new(Instant::now()),
            kill,
            exited,
            next: Mutex::new(Some(next)),
        });
        match tokio::time::timeout(READY_WITHIN, ready_rx).await {
            Ok(Ok(())) => Ok(instance),
            Ok(Err(_)) => {
                // Its output ended: it exited. Say what it said.
                tokio::time::sleep(Duration::from_millis(50)).await;
                instance.stop();
                let said = early.lock().expect("early").join("\n");
                anyhow::bail!("the {} instance exited at start: {said}", js.as_str())
            }
            Err(_) => {
                instance.stop();
                anyhow::bail!("the {} instance did not start within 10 s", js.as_str())
            }
        }
    }

    /// Gives the instance its function: the deployment's sources linked
    /// into its `/fn`, then loaded by the harness. The error is what the
    /// harness said (a syntax error, a missing export).
    pub async fn load(
        &self,
        sources: &Path,
        function: &Function,
        env: &[(String, String)],
        owner: Owner,
    ) -> Result<(), String> {
        tracing::debug!(instance = self.id, function = %owner.function, "loading");
        let _ = self.owner.set(owner);
        let target = self.dir.join("fn");
        let (from, to) = (sources.to_owned(), target.clone());
        tokio::task::spawn_blocking(move || link_tree(&from, &to))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("linking the function's files: {e}"))?;
        let shape = match function.shape {
            Shape::Vercel => "vercel",
            Shape::Netlify => "netlify",
            Shape::NetlifyEdge => "netlify-edge",
            Shape::Pages => "pages",
        };
        let routes: Vec<serde_json::Value> = function
            .pages_routes
            .iter()
            .map(|r| {
                serde_json::json!({
                    "pattern": r.pattern, "method": r.method, "file": format!("/fn/{}", r.file),
                    "middleware": r.middleware, "catchall": r.catchall,
                })
            })
            .collect();
        let env: serde_json::Map<String, serde_json::Value> =
            env.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        let spec = serde_json::json!({
            "shape": shape, "entry": format!("/fn/{}", function.entry), "root": "/fn", "routes": routes, "env": env,
        });
        let req = Request::post("/__helix/load")
            .header(http::header::HOST, "function")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(boxed(Full::new(Bytes::from(spec.to_string()))))
            .expect("valid request");
        let resp = tokio::time::timeout(READY_WITHIN, self.send(req))
            .await
            .map_err(|_| "loading the function took over 10 s".to_owned())?
            .map_err(|e| format!("the instance did not answer: {e}"))?;
        if resp.status().is_success() {
            return Ok(());
        }
        let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        Err(String::from_utf8_lossy(&body).trim().to_owned())
    }

    /// Answers the function's requests for the rest of its deployment
    /// (Pages' `next()` and `env.ASSETS`, a Netlify edge function's
    /// `context.next()`) through `pass_on`, for the instance's life. Only
    /// the instance can connect (the socket is in its own directory);
    /// what it asks is routed within its own deployment. Without
    /// `pass_on` (a shape that cannot pass requests on) the socket is
    /// closed: connecting is refused, not left waiting.
    pub fn serve_passed_on(&self, pass_on: Option<PassOn>, deployment: DeploymentId, shape: Shape) {
        let Some(listener) = self.next.lock().expect("next").take() else { return };
        let Some(pass_on) = pass_on else { return };
        let (exited, dead) = (self.exited.clone(), self.dead.clone());
        // Requests answered at once; more wait their turn (a function
        // passing on a thousand at once gets 64 of the server's work).
        let room = Arc::new(tokio::sync::Semaphore::new(PASS_ON_AT_ONCE));
        tokio::spawn(async move {
            let stopped = exited.notified();
            tokio::pin!(stopped);
            stopped.as_mut().enable();
            if dead.load(Ordering::Relaxed) {
                return;
            }
            loop {
                let stream = tokio::select! {
                    () = &mut stopped => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => {
                            // Out of descriptors, say: not a reason to spin.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let (pass_on, deployment, room) = (pass_on.clone(), deployment.clone(), room.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (pass_on, deployment, room) = (pass_on.clone(), deployment.clone(), room.clone());
                        async move {
                            let _turn = room.acquire_owned().await.expect("never closed");
                            let req = req.map(|b| b.map_err(Into::into).boxed());
                            Ok::<_, std::convert::Infallible>(pass_on(deployment, shape, req).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    }

    /// Sends one request on an idle connection, or a new one.
    pub async fn send(&self, req: Request<Body>) -> Result<http::Response<Incoming>, SendError> {
        self.send_keeping(req).await.map(|(resp, _)| resp)
    }

    /// A connection back to the idle list (once its response is read).
    pub fn give_back(&self, sender: SendRequest<Body>) {
        if sender.is_closed() || self.dead.load(Ordering::Relaxed) {
            return;
        }
        // Often not ready yet (its connection task still reads the
        // response's end): the next request waits the moment it takes,
        // which costs less than a task per request to wait for it here.
        self.idle.lock().expect("idle").push(sender);
    }

    /// Sends a request, keeping the connection to hand back with the
    /// response (for [`Instance::give_back`]).
    pub async fn send_keeping(
        &self,
        req: Request<Body>,
    ) -> Result<(http::Response<Incoming>, SendRequest<Body>), SendError> {
        let mut sender = loop {
            let idle = self.idle.lock().expect("idle").pop();
            match idle {
                Some(mut s) => {
                    // Ready at once, or within a moment once its previous
                    // response's end is processed.
                    if s.is_ready()
                        || tokio::time::timeout(Duration::from_millis(5), s.ready()).await.is_ok_and(|r| r.is_ok())
                    {
                        break s;
                    }
                }
                None => break self.connect().await?,
            }
        };
        let resp = sender.send_request(req).await.map_err(SendError::Http)?;
        Ok((resp, sender))
    }

    async fn connect(&self) -> Result<SendRequest<Body>, SendError> {
        let stream = tokio::net::UnixStream::connect(&self.sock).await.map_err(SendError::Connect)?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(SendError::Http)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Kills the instance (its requests fail); returns at once.
    pub fn stop(&self) {
        self.dead.store(true, Ordering::Relaxed);
        self.idle.lock().expect("idle").clear();
        self.kill.notify_one();
    }

    /// Waits (at most `limit`) until the instance has exited.
    pub async fn wait_dead(&self, limit: Duration) {
        let exited = self.exited.notified();
        tokio::pin!(exited);
        exited.as_mut().enable();
        if !self.is_dead() {
            let _ = tokio::time::timeout(limit, exited).await;
        }
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    pub fn idle_for(&self) -> Duration {
        self.last_used.lock().expect("last used").elapsed()
    }

    pub fn touch(&self) {
        *self.last_used.lock().expect("last used") = Instant::now();
    }
}

/// Why a request did not reach the instance or got no answer.
#[derive(Debug)]
pub(crate) enum SendError {
    Connect(std::io::Error),
    Http(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connecting: {e}"),
            SendError::Http(e) => write!(f, "{e}"),
        }
    }
}

pub(crate) fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// Waits for the sandbox to exit (or to be told to die), then records why
/// and removes the instance's directory.
async fn watch(
    mut sandbox: helix_sandbox::Sandboxed,
    heap_full: Arc<AtomicBool>,
    dead: Arc<AtomicBool>,
    death: Arc<Mutex<Option<String>>>,
    kill: Arc<Notify>,
    exited: Arc<Notify>,
    dir: PathBuf,
) {
    let why = tokio::select! {
        status = sandbox.child.wait() => {
            sandbox.sweep().await;
            match status {
                _ if sandbox.oom_killed() => "out of memory (the instance's memory limit)".to_owned(),
                _ if heap_full.load(Ordering::Relaxed) => "out of memory (the JavaScript heap)".to_owned(),
                Ok(s) => match s.code() {
                    Some(code) => format!("exited with status {code}"),
                    None => "killed by a signal".to_owned(),
                },
                Err(e) => e.to_string(),
            }
        }
        () = kill.notified() => {
            sandbox.stop().await;
            "stopped".to_owned()
        }
    };
    dead.store(true, Ordering::Relaxed);
    death.lock().expect("death").get_or_insert(why);
    exited.notify_waiters();
    drop(sandbox);
    let _ = tokio::fs::remove_dir_all(&dir).await;
}

/// Reads an instance's output: the harness's first stdout line says it
/// listens; then each line is a log record (tagged JSON from the
/// harness's console, or raw text).
/// Where an instance's output goes.
#[derive(Clone)]
struct Output {
    logs: Logs,
    /// Set once the instance has a function.
    owner: Arc<OnceLock<Owner>>,
    /// Lines written before: why a start failed.
    early: Arc<Mutex<Vec<String>>>,
    /// V8 said its heap is full (it then aborts).
    heap_full: Arc<AtomicBool>,
    /// Lines kept in the current second, and those dropped over the rate.
    rate: Arc<Mutex<Rate>>,
}

/// Lines one instance may log a second; the rest are dropped and counted
/// (a function printing in a loop must not fill the database).
const MAX_LINES_PER_SECOND: u32 = 1000;

#[derive(Default)]
struct Rate {
    second: u64,
    kept: u32,
    dropped: u64,
}

impl Rate {
    /// Whether a line written now is kept; and, when a new second begins
    /// after drops, how many the last ones dropped.
    fn admit(&mut self, now_s: u64) -> (bool, Option<u64>) {
        let mut report = None;
        if now_s != self.second {
            self.second = now_s;
            self.kept = 0;
            report = (self.dropped > 0).then(|| std::mem::take(&mut self.dropped));
        }
        if self.kept < MAX_LINES_PER_SECOND {
            self.kept += 1;
            (true, report)
        } else {
            self.dropped += 1;
            (false, report)
        }
    }
}

async fn read_lines(
    from: impl tokio::io::AsyncRead + Unpin,
    stream: Stream,
    out: Output,
    mut ready: Option<oneshot::Sender<()>>,
) {
    let Output { logs, owner, early, heap_full, rate } = out;
    let mut lines = BufReader::new(from).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(tx) = ready.take() {
            if line.contains("\"ready\":true") {
                let _ = tx.send(());
                continue;
            }
            ready = Some(tx);
        }
        let (request, stream, text) = match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(v) if v.get("m").is_some() => (
                v["r"].as_str().unwrap_or_default().to_owned(),
                if v["s"] == "err" { Stream::Stderr } else { Stream::Stdout },
                v["m"].as_str().unwrap_or_default().to_owned(),
            ),
            _ => (String::new(), stream, line),
        };
        if stream == Stream::Stderr && text.contains("heap out of memory") {
            heap_full.store(true, Ordering::Relaxed);
        }
        match owner.get() {
            Some(owner) => {
                let now_s =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let (keep, dropped) = rate.lock().expect("rate").admit(now_s);
                if let Some(n) = dropped {
                    let note = format!("{n} lines dropped: over {MAX_LINES_PER_SECOND} lines a second");
                    logs.push(owner, "", Stream::System, note);
                }
                if keep {
                    logs.push(owner, &request, stream, text);
                }
            }
            None => {
                let mut early = early.lock().expect("early");
                if early.len() < 20 {
                    early.push(text);
                }
            }
        }
    }
}

/// Hard-links every file under `from` into `to` (same file system: the
/// runtime's directory), making the directories.
fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&dst)?;
            link_tree(&src, &dst)?;
        } else {
            std::fs::hard_link(&src, &dst).or_else(|_| std::fs::copy(&src, &dst).map(|_| ()))?;
        }
    }
    Ok(())
}
