//! The wiring: composes every plane into one running `helix server`.
//!
//! This is the only crate that knows all planes. It picks each backend by
//! URL scheme (state: `sqlite://` or `postgres://`), opens the data
//! directory, binds the API and edge listeners, replays what the edge must
//! serve, and starts the background tasks. The CLI and the integration
//! tests boot the same [`start`].

mod builds;

pub use builds::QueueSettings;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use helix_artifacts::{BlobStore, LocalBlobStore};
use helix_bus::{Bus, InProcessBus};
use helix_control::{ControlPlane, GcSettings};
use helix_core::events::{Event, SplitVariant};
use helix_core::hosts::PublicEdge;
use helix_core::limits::Limits;
use helix_edge::{Edge, EdgeConfig};
use helix_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Everything `helix server` can be told.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub api_addr: SocketAddr,
    pub edge_addr: SocketAddr,
    pub base_domain: String,
    /// `sqlite://…` or `postgres://…`; default: SQLite in the data dir.
    pub database_url: Option<String>,
    pub limits: Limits,
    pub gc: GcSettings,
    pub edge_cache_bytes: u64,
    /// Trusted request header carrying the visitor's country code.
    pub country_header: Option<String>,
    /// Whether proxy rules may reach other origins.
    pub proxy_enabled: bool,
    /// HS256 secret of visitors' `nf_jwt` tokens (Netlify `Role=` rules).
    pub role_jwt_secret: Option<String>,
    /// A MaxMind `.mmdb` for visitors' countries (Netlify `Country=`).
    pub geoip_db: Option<PathBuf>,
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
            api_addr: ([127, 0, 0, 1], 7070).into(),
            edge_addr: ([127, 0, 0, 1], 8080).into(),
            base_domain: "localhost".into(),
            database_url: None,
            limits: Limits::default(),
            gc: GcSettings::default(),
            edge_cache_bytes: EdgeConfig::default().cache_bytes,
            country_header: None,
            proxy_enabled: true,
            role_jwt_secret: None,
            geoip_db: None,
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
        TcpListener::bind(config.api_addr).await.with_context(|| format!("binding the API to {}", config.api_addr))?;
    let edge_listener = TcpListener::bind(config.edge_addr)
        .await
        .with_context(|| format!("binding the edge to {}", config.edge_addr))?;
    let api_addr = api_listener.local_addr()?;
    let edge_addr = edge_listener.local_addr()?;
    let public_edge = PublicEdge { scheme: "http", base_domain: config.base_domain.clone(), port: edge_addr.port() };

    // The edge subscribes before it reads the current state, so no event
    // falls between the two; applying an event twice is harmless.
    let country_header = match &config.country_header {
        Some(name) => Some(
            http::HeaderName::from_bytes(name.as_bytes())
                .with_context(|| format!("country header {name:?} is not a valid header name"))?,
        ),
        None => None,
    };
    let geoip = match &config.geoip_db {
        Some(path) => Some(Arc::new(helix_edge::geoip::GeoIp::open(path).map_err(anyhow::Error::msg)?)),
        None => None,
    };
    let edge = Edge::new(
        EdgeConfig {
            base_domain: config.base_domain.clone(),
            cache_bytes: config.edge_cache_bytes,
            country_header,
            proxy: helix_edge::ProxyConfig { enabled: config.proxy_enabled, ..Default::default() },
            role_jwt_secret: config.role_jwt_secret.as_ref().map(|s| s.as_bytes().to_vec()),
            geoip,
            ..EdgeConfig::default()
        },
        blobs.clone(),
    );
    let subscription = bus.subscribe();
    edge.apply(&initial_events(&store).await?).await;

    let secrets = helix_control::SecretKey::load_or_create(&config.data_dir).context("loading the secret key")?;
    let build_wake = Arc::new(tokio::sync::Notify::new());
    let api_url = format!("http://{api_addr}");
    let build_link = helix_control::BuildLink { api_url: api_url.clone(), wake: build_wake.clone() };
    let control = ControlPlane::new(
        store.clone(),
        blobs,
        bus as Arc<dyn Bus>,
        public_edge.clone(),
        helix_control::Settings { limits: config.limits, gc: config.gc, secrets, build_link },
    )
    .context("starting the compression threads")?;
    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let router = helix_control::router(control.clone());
    let api_stop = until_stopped(stopped.clone());
    let tasks = vec![
        tokio::spawn(async move {
            if let Err(e) = axum::serve(api_listener, router).with_graceful_shutdown(api_stop).await {
                tracing::error!(error = %e, "API server stopped");
            }
        }),
        tokio::spawn(helix_edge::serve(edge.clone(), edge_listener, until_stopped(stopped.clone()))),
        tokio::spawn(edge.clone().follow(subscription)),
        control.spawn_outbox_relay(),
        control.spawn_gc(),
    ];
    let mut tasks = tasks;
    if config.build_workers > 0 {
        if store.backend() == "sqlite" {
            store.expire_build_leases().await.context("recovering builds from before a restart")?;
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
            api: helix_client::Api::new(&api_url, Some(admin_token.clone()))?,
        });
        let settings = helix_build::WorkerSettings { concurrency: config.build_workers, ..config.build.clone() };
        tasks.extend(helix_build::spawn_workers(settings, queue, host));
    }
    tracing::info!(%api_addr, %edge_addr, backend = store.backend(), "helix server started");
    Ok(Running { api_addr, edge_addr, admin_token, public_edge, edge, stop, tasks, store })
}

/// What the edge must serve right now, as the events that would have told it.
async fn initial_events(store: &Store) -> anyhow::Result<Vec<Event>> {
    let state = store.serving_state().await.context("reading what to serve")?;
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
    for (project, deployment) in state.production {
        if let Some(manifest) = manifests.get(&deployment) {
            events.push(Event::DeployPromoted { project, deployment, manifest: *manifest });
        }
    }
    let mut splits: std::collections::BTreeMap<_, Vec<SplitVariant>> = Default::default();
    for (project, deployment, weight) in state.splits {
        if let Some(manifest) = manifests.get(&deployment) {
            splits.entry(project).or_default().push(SplitVariant { deployment, manifest: *manifest, weight });
        }
    }
    events.extend(splits.into_iter().map(|(project, variants)| Event::SplitChanged { project, variants }));
    for (project, alias, deployment) in state.aliases {
        if let Some(manifest) = manifests.get(&deployment) {
            events.push(Event::AliasSet { project, alias, deployment, manifest: *manifest });
        }
    }
    Ok(events)
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}
