//! The wiring: composes every plane into one running `helix server`.
//!
//! This is the only crate that knows all planes. It picks each backend by
//! URL scheme (state: `sqlite://` or `postgres://`), opens the data
//! directory, binds the API and edge listeners, replays what the edge must
//! serve, and starts the background tasks. The CLI and the integration
//! tests boot the same [`start`].

mod builds;
mod cron;
mod functions;

pub use builds::QueueSettings;
pub use helix_control::ApiSettings;
/// The API's route table and the webhook signature, for tests.
pub mod control {
    pub use helix_control::{Need, RouteSpec, Scope, route_table, webhook_signature};
}
pub use helix_edge::EdgeSettings;
pub use helix_runtime::RuntimeSettings;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use helix_artifacts::{BlobStore, LocalBlobStore};
use helix_bus::{Bus, EdgeAcks, InProcessBus};
use helix_control::ControlPlane;
use helix_core::events::{Event, SplitVariant};
use helix_core::hosts::PublicEdge;
use helix_edge::Edge;
use helix_store::{ServingState, Store};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Everything `helix server` can be told. Each plane owns its settings
/// (`ApiSettings`, `EdgeSettings`); the CLI flattens them into its flags.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub base_domain: String,
    /// `sqlite://…` or `postgres://…`; default: SQLite in the data dir.
    pub database_url: Option<String>,
    pub api: ApiSettings,
    pub edge: EdgeSettings,
    pub runtime: RuntimeSettings,
    /// Build workers (0: this server builds nothing, another one does).
    pub build_workers: usize,
    pub build: helix_build::WorkerSettings,
    pub build_queue: QueueSettings,
}

impl Config {
    /// Defaults for a data directory: loopback listeners on the documented
    /// ports, `localhost` as base domain, SQLite.
    pub fn new(data_dir: PathBuf) -> Self {
        Config {
            base_domain: "localhost".into(),
            database_url: None,
            api: ApiSettings::default(),
            edge: EdgeSettings::default(),
            runtime: RuntimeSettings::default(),
            build_workers: 1,
            build: helix_build::WorkerSettings::new(&data_dir),
            build_queue: QueueSettings::default(),
            data_dir,
        }
    }
}

/// A started server. Dropping it does not stop it; call [`Running::shutdown`].
pub struct Running {
    pub api_addr: SocketAddr,
    pub edge_addr: SocketAddr,
    pub admin_token: String,
    pub public_edge: PublicEdge,
    pub edge: Arc<Edge>,
    pub runtime: helix_runtime::Runtime,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    store: Arc<Store>,
}

impl Running {
    /// Stops accepting, stops background tasks, closes the store.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        self.store.close().await;
    }
}

/// Starts every plane on the embedded defaults (or the URLs in `config`).
pub async fn start(config: Config) -> anyhow::Result<Running> {
    // Connections and files share the descriptor limit: take all we may.
    let descriptors = helix_http::raise_fd_limit();
    tracing::debug!(descriptors, "file-descriptor limit");
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    // It holds the state, the keys and every build's workspace: only the
    // server's user may enter it (builds bind their workspace by descriptor).
    std::fs::set_permissions(&config.data_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .with_context(|| format!("restricting data directory {}", config.data_dir.display()))?;
    let database_url = config
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", config.data_dir.join("helix.db").display()));
    let store = Arc::new(
        Store::open(&database_url).await.with_context(|| format!("opening state store {}", redact(&database_url)))?,
    );
    let blobs: Arc<dyn BlobStore> =
        Arc::new(LocalBlobStore::open(config.data_dir.join("blobs")).context("opening the blob store")?);
    let bus = Arc::new(InProcessBus::new());
    let admin_token =
        helix_control::ensure_admin_token(&store, &config.data_dir).await.context("setting up the admin token")?;

    let api_listener =
        TcpListener::bind(config.api.addr).await.with_context(|| format!("binding the API to {}", config.api.addr))?;
    let edge_listener = TcpListener::bind(config.edge.addr)
        .await
        .with_context(|| format!("binding the edge to {}", config.edge.addr))?;
    let api_addr = api_listener.local_addr()?;
    let edge_addr = edge_listener.local_addr()?;
    let public_edge = PublicEdge { scheme: "http", base_domain: config.base_domain.clone(), port: edge_addr.port() };

    // The edge subscribes before it reads the current state, so no event
    // falls between the two; the state says which sequence number it is
    // as of, and older events are skipped.
    let edge = Edge::new(config.edge.clone(), &config.base_domain, blobs.clone())?;
    let runtime = helix_runtime::Runtime::start(config.runtime.clone(), &config.data_dir, blobs.clone())
        .context("starting the function runtime")?;
    let runtime_invoker = Arc::new(functions::RuntimeInvoker {
        runtime: runtime.clone(),
        base_domain: config.base_domain.as_str().into(),
    });
    let invoker: Arc<dyn helix_edge::Invoker> = runtime_invoker.clone();
    edge.set_invoker(invoker.clone());
    runtime.set_pass_on(functions::pass_on(&edge));
    let promotions = bus.subscribe();
    let subscription = bus.subscribe();
    let state = store.serving_state().await.context("reading what to serve")?;
    edge.replay(&initial_events(&state), state.seq).await;
    let acks = Arc::new(EdgeAcks::new());
    acks.register(edge.applied());

    let secrets = helix_control::Keyring::load(&config.data_dir).context("loading the master keys")?;
    let build_wake = Arc::new(tokio::sync::Notify::new());
    let api_url = format!("http://{api_addr}");
    let build_link = helix_control::BuildLink { api_url: api_url.clone(), wake: build_wake.clone() };
    let control = ControlPlane::new(
        store.clone(),
        blobs.clone(),
        bus as Arc<dyn Bus>,
        public_edge.clone(),
        helix_control::Settings {
            api: config.api.clone(),
            secrets,
            build_link,
            applied: acks,
            functions_dir: config.data_dir.join("functions"),
            runtime: runtime.clone(),
        },
    )
    .context("starting the compression threads")?;
    runtime.set_project_env(functions::project_env(&control));
    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let router = helix_control::router(control.clone());
    let api_settings = config.api.listener();
    let api_stop = until_stopped(stopped.clone());
    let tasks = vec![
        tokio::spawn(async move {
            let make = |_peer| hyper_util::service::TowerToHyperService::new(router.clone());
            helix_http::serve(api_listener, api_settings, make, api_stop).await;
        }),
        tokio::spawn(helix_edge::serve(edge.clone(), edge_listener, until_stopped(stopped.clone()))),
        tokio::spawn(edge.clone().follow(subscription)),
        control.spawn_outbox_relay(),
        control.spawn_deliverer().map_err(anyhow::Error::msg).context("starting the webhook deliverer")?,
        control.spawn_commit_statuses().map_err(anyhow::Error::msg).context("starting the commit status poster")?,
        control.spawn_gc(),
        control.spawn_domain_checker(),
        tokio::spawn(runtime_invoker.prewarm_on_promote(promotions, blobs.clone())),
        tokio::spawn(functions::store_logs(runtime.clone(), store.clone())),
        cron::Crons {
            store: store.clone(),
            blobs: blobs.clone(),
            invoker,
            edge_addr,
            base_domain: config.base_domain.clone(),
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(cron::REQUEST_LIMIT)
                .build()
                .context("building the cron client")?,
        }
        .spawn(),
    ];
    let mut tasks = tasks;
    if config.build_workers > 0 {
        if store.backend() == "sqlite" {
            store.builds().expire_build_leases().await.context("recovering builds from before a restart")?;
        }
        let queue = Arc::new(builds::StoreQueue {
            store: store.clone(),
            wake: build_wake,
            settings: config.build_queue.clone(),
        });
        let host = Arc::new(builds::Host {
            store: store.clone(),
            control: control.clone(),
            edge: public_edge.clone(),
            api_url: api_url.clone(),
        });
        let settings = helix_build::WorkerSettings { concurrency: config.build_workers, ..config.build.clone() };
        tasks.extend(helix_build::spawn_workers(settings, queue, host));
    }
    tracing::info!(%api_addr, %edge_addr, backend = store.backend(), "helix server started");
    Ok(Running { api_addr, edge_addr, admin_token, public_edge, edge, runtime, stop, tasks, store })
}

/// What the edge must serve right now, as the events that would have told it.
fn initial_events(state: &ServingState) -> Vec<Event> {
    let manifests: std::collections::HashMap<_, _> =
        state.deployments.iter().map(|(_, id, m)| (id.clone(), *m)).collect();
    let mut events: Vec<Event> = state
        .deployments
        .iter()
        .map(|(project, deployment, manifest)| Event::DeployReady {
            project: project.clone(),
            deployment: deployment.clone(),
            manifest: *manifest,
        })
        .collect();
    for (project, deployment) in &state.production {
        if let Some(manifest) = manifests.get(deployment) {
            events.push(Event::DeployPromoted {
                project: project.clone(),
                deployment: deployment.clone(),
                manifest: *manifest,
            });
        }
    }
    let mut splits: std::collections::BTreeMap<_, Vec<SplitVariant>> = Default::default();
    for (project, deployment, weight) in &state.splits {
        if let Some(manifest) = manifests.get(deployment) {
            let variant = SplitVariant { deployment: deployment.clone(), manifest: *manifest, weight: *weight };
            splits.entry(project.clone()).or_default().push(variant);
        }
    }
    events.extend(splits.into_iter().map(|(project, variants)| Event::SplitChanged { project, variants }));
    for (project, alias, deployment) in &state.aliases {
        if let Some(manifest) = manifests.get(deployment) {
            events.push(Event::AliasSet {
                project: project.clone(),
                alias: alias.clone(),
                deployment: deployment.clone(),
                manifest: *manifest,
            });
        }
    }
    for d in &state.domains {
        events.push(match d.verified_at_ms {
            Some(_) => Event::DomainSet {
                project: d.project.clone(),
                domain: d.name.clone(),
                previews: d.previews,
                redirect_to: d.redirect_to.clone(),
            },
            None => Event::DomainPending { project: d.project.clone(), domain: d.name.clone(), token: d.token.clone() },
        });
    }
    events
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}
