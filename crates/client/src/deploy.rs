//! `helix deploy`: hash, ask which blobs are missing, upload those, finalize.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};
use helix_core::api::{CreateDeployment, CreatedDeployment, Deployment, Propagation, RoutesReport};
use helix_core::limits::Limits;
use helix_core::{Digest, ProjectName};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::Api;

/// Blob uploads in flight at once.
const UPLOAD_CONCURRENCY: usize = 8;

#[derive(Debug, Serialize)]
pub struct DeployReport {
    pub id: String,
    pub project: String,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub production_url: Option<String>,
    pub files: usize,
    pub total_bytes: u64,
    /// Function source files carried along (not served).
    #[serde(skip_serializing_if = "is_zero")]
    pub function_sources: usize,
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routes: Option<RoutesReport>,
    /// Whether the edge serves it yet (it does when the deploy returns,
    /// unless the edge did not confirm in time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propagation: Option<Propagation>,
}

pub struct DeployArgs<'a> {
    /// The project root: config files are read here.
    pub dir: &'a Path,
    /// The directory to publish, relative to the root (default: what the
    /// config names, else the root).
    pub publish_dir: Option<&'a Path>,
    pub project: Option<&'a str>,
    pub production: bool,
    pub compat: Option<&'a str>,
    pub strict: bool,
    /// Also serve it at `<alias>--<project>` once ready (previews).
    pub alias: Option<String>,
    /// Directories (relative to `dir`) of function sources to carry along,
    /// not served.
    pub function_dirs: Vec<PathBuf>,
    /// Netlify's deploy context and the branch (builds say; default: by
    /// `production`).
    pub context: Option<&'a str>,
    pub branch: Option<&'a str>,
    pub show_progress: bool,
}

/// A project on disk: its root config files and the directory it publishes.
pub struct Project {
    pub config: BTreeMap<String, Vec<u8>>,
    pub publish: PathBuf,
}

/// Reads the root's config files and finds the publish directory.
pub fn project(root: &Path, publish_dir: Option<&Path>) -> anyhow::Result<Project> {
    let mut config = BTreeMap::new();
    for name in helix_config::ROOT_CONFIG_FILES {
        let path = root.join(name);
        if path.is_file() {
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            config.insert((*name).to_owned(), bytes);
        }
    }
    let publish = match publish_dir {
        Some(d) => root.join(d),
        None => match helix_config::publish_dir(&config) {
            Some(d) => root.join(d.trim_start_matches("./")),
            None => root.to_owned(),
        },
    };
    if !publish.is_dir() {
        anyhow::bail!("publish directory {} does not exist", publish.display());
    }
    Ok(Project { config, publish })
}

/// The project name: given, or made from the directory's name.
pub fn project_name(dir: &Path, given: Option<&str>) -> anyhow::Result<ProjectName> {
    if let Some(name) = given {
        return Ok(ProjectName::parse(name)?);
    }
    let base = dir.canonicalize().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    base.as_deref()
        .and_then(ProjectName::slugify)
        .with_context(|| format!("cannot make a project name from {}; pass --project", dir.display()))
}

pub async fn deploy(api: &Api, args: DeployArgs<'_>) -> anyhow::Result<DeployReport> {
    let started = Instant::now();
    let project = project_name(args.dir, args.project)?;
    let on_disk = self::project(args.dir, args.publish_dir)?;
    // Function sources come from the root, as a build takes them.
    let function_dirs: Vec<PathBuf> = if args.function_dirs.is_empty() {
        let netlify_dir = helix_config::build_settings(&on_disk.config).ok().flatten().and_then(|b| b.functions);
        helix_config::functions::source_dirs(netlify_dir.as_deref()).into_iter().map(PathBuf::from).collect()
    } else {
        args.function_dirs.clone()
    };
    let mut listed = crate::scan::list(&on_disk.publish, &Limits::default())?;
    if on_disk.publish.canonicalize().ok() == args.dir.canonicalize().ok() {
        // Config files at the root are read, not served; nor are function
        // modules (other files in those directories stay public).
        listed.retain(|(site_path, _, _)| {
            let rel = site_path.trim_start_matches('/');
            let function =
                helix_config::functions::is_module(rel) && function_dirs.iter().any(|d| Path::new(rel).starts_with(d));
            !on_disk.config.contains_key(rel) && !function
        });
    }
    let total: u64 = listed.iter().map(|(_, _, s)| s).sum();
    let bar = progress(args.show_progress, total, "hashing");
    let scan = {
        let bar = bar.clone();
        tokio::task::spawn_blocking(move || crate::scan::hash(listed, &bar)).await??
    };
    bar.finish_and_clear();
    let functions = function_sources(args.dir, &function_dirs).await?;

    let config: BTreeMap<String, (Digest, Vec<u8>)> =
        on_disk.config.into_iter().map(|(name, bytes)| (name, (Digest::of(&bytes), bytes))).collect();
    let request = CreateDeployment {
        files: scan.files.iter().map(|(path, f)| (path.clone(), f.digest.to_hex())).collect(),
        production: args.production,
        config: config.iter().map(|(name, (digest, _))| (name.clone(), digest.to_hex())).collect(),
        compat: args.compat.map(str::to_owned),
        strict: args.strict,
        alias: args.alias.clone(),
        functions: functions.files.iter().map(|(path, f)| (path.clone(), f.digest.to_hex())).collect(),
        context: args.context.map(str::to_owned),
        branch: args.branch.map(str::to_owned),
    };
    let created: CreatedDeployment = api.post(&format!("/api/v1/projects/{project}/deployments"), &request).await?;

    let by_digest: HashMap<String, &crate::scan::ScannedFile> =
        scan.files.values().chain(functions.files.values()).map(|f| (f.digest.to_hex(), f)).collect();
    let config_by_digest: HashMap<String, &Vec<u8>> =
        config.values().map(|(digest, bytes)| (digest.to_hex(), bytes)).collect();
    let mut uploads: Vec<(&String, &crate::scan::ScannedFile)> = Vec::new();
    for digest in &created.required {
        if let Some(file) = by_digest.get(digest) {
            uploads.push((digest, *file));
        } else if let Some(bytes) = config_by_digest.get(digest) {
            let path = format!("/api/v1/deployments/{}/blobs/{digest}", created.id);
            api.put_bytes(&path, bytes::Bytes::from((*bytes).clone())).await.context("uploading a config file")?;
        } else {
            anyhow::bail!("server asked for unknown digest {digest}");
        }
    }
    let uploaded_bytes: u64 = uploads.iter().map(|(_, f)| f.size).sum();
    let bar = progress(args.show_progress, uploaded_bytes, "uploading");
    // Owned items: a stream borrowing from `uploads` would not be `Send`
    // for every lifetime, which spawned callers (build workers) need.
    let jobs: Vec<(String, PathBuf, u64)> =
        uploads.iter().map(|(digest, file)| ((*digest).clone(), file.disk.clone(), file.size)).collect();
    let id = created.id.clone();
    futures_util::stream::iter(jobs.into_iter().map(|(digest, disk, size)| {
        let bar = bar.clone();
        let api = api.clone();
        let path = format!("/api/v1/deployments/{id}/blobs/{digest}");
        async move {
            let bytes = tokio::fs::read(&disk).await.with_context(|| format!("reading {}", disk.display()))?;
            api.put_bytes(&path, bytes.into()).await.with_context(|| format!("uploading {}", disk.display()))?;
            bar.inc(size);
            anyhow::Ok(())
        }
    }))
    .buffer_unordered(UPLOAD_CONCURRENCY)
    .try_collect::<Vec<()>>()
    .await?;
    bar.finish_and_clear();

    let done: Deployment =
        api.post(&format!("/api/v1/deployments/{}/finalize", created.id), &serde_json::json!({})).await?;
    Ok(DeployReport {
        id: done.id,
        project: done.project,
        url: done.url,
        production_url: if done.production { done.production_url } else { None },
        files: scan.files.len(),
        total_bytes: scan.total_bytes,
        function_sources: functions.files.len(),
        uploaded: uploads.len(),
        uploaded_bytes,
        seconds: started.elapsed().as_secs_f64(),
        routes: done.routes,
        propagation: done.propagation,
    })
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The function sources under `dirs` (each relative to `root`; missing
/// ones are skipped), keyed by their path relative to `root`.
async fn function_sources(root: &Path, dirs: &[PathBuf]) -> anyhow::Result<crate::scan::Scan> {
    let mut listed = Vec::new();
    for dir in dirs {
        let full = root.join(dir);
        if !full.is_dir() || std::fs::read_dir(&full)?.next().is_none() {
            continue;
        }
        for (site_path, disk, size) in crate::scan::list(&full, &Limits::default())? {
            let rel = Path::new(dir).join(site_path.trim_start_matches('/'));
            listed.push((rel.display().to_string(), disk, size));
        }
    }
    // The project's dependencies, for the server to install and bundle.
    if !listed.is_empty() {
        for name in ["package.json", "package-lock.json"] {
            let path = root.join(name);
            if let Ok(meta) = std::fs::metadata(&path)
                && meta.is_file()
            {
                listed.push((name.to_owned(), path, meta.len()));
            }
        }
    }
    let scan = tokio::task::spawn_blocking(move || crate::scan::hash(listed, &ProgressBar::hidden())).await??;
    Ok(scan)
}

fn progress(show: bool, total: u64, what: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what);
    bar
}
