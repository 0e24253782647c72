//! The deploy protocol: create (file table in, missing digests out),
//! upload blobs by digest, finalize (manifest, variants, pointer).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use helix_artifacts::variants;
use helix_core::api::{CreateDeployment, CreatedDeployment, DeployOptions, DeploymentState, RoutesReport};
use helix_core::limits::Limits;
use helix_core::manifest::{Encodings, FileEntry, MANIFEST_VERSION, Manifest, Variant};
use helix_core::path::SitePath;
use helix_core::{DeploymentId, Digest, ProjectName};
use helix_store::{DeploymentRow, Finalized, NewAudit, NewDeployment, ProjectRef, Ready};

use crate::access::{Ctx, Need};
use crate::policy::Decision;
use crate::problem::ApiError;
use crate::{ControlPlane, now_ms};

impl ControlPlane {
    pub(crate) async fn create_deployment(
        &self,
        ctx: &Ctx,
        project: &str,
        body: &[u8],
    ) -> Result<CreatedDeployment, ApiError> {
        let project = ProjectName::parse(project).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let target = self.project_or_new(ctx, &project, Need::BUILD_DEPLOY, "deploy").await?;
        let (req, files, options) = parse_create(body, &self.limits)?;
        let _gc = self.gc_lock.read().await;
        let now = now_ms();
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| ApiError::Internal(e.to_string()))?;
        let id = DeploymentId::generate(now as u64, u128::from_le_bytes(random));
        // What it comes from: a build's branch and commit, or the API's word.
        let build = match &ctx.actor.token.build_id {
            Some(build) => self.store.builds().build(build).await?,
            None => None,
        };
        let (source, commit) = match &build {
            Some(b) => ("git", b.commit.clone()),
            None => ("api", None),
        };
        let deployment = serde_json::json!({
            "id": id.as_str(), "branch": options.branch, "commit": commit, "source": source,
            "context": options.context, "build_status": build.as_ref().map(|_| "building"),
            "production": req.production,
        });
        let decision = Decision {
            action: "deploy",
            project: Some(&target),
            environment: Some(if req.production { "production" } else { "preview" }),
            deployment: Some(deployment),
            request: serde_json::json!({ "files": files.len() }),
        };
        self.decide_for(ctx, decision).await?;
        if ctx.actor.token.build_id.is_some()
            && !self.store.identity().bind_token_deployment(&ctx.actor.token.id, id.as_str()).await?
        {
            return Err(ApiError::Forbidden("a build's token creates one deployment, and this one has".into()));
        }
        let detail = serde_json::json!({ "files": files.len(), "production": req.production });
        let audit = NewAudit { target: Some(id.as_str()), ..ctx.audit_on(&target, "deploy.create", detail) };
        let made = self
            .store
            .deployments()
            .create_deployment(NewDeployment {
                id: &id,
                options: &options,
                project: &project,
                org_id: &target.org_id,
                files: &files,
                production: req.production,
                branch: options.branch.as_deref(),
                commit: commit.as_deref(),
                source,
                audit: &audit,
                now_ms: now,
            })
            .await?;
        if !made {
            return Err(crate::access::name_taken(&project));
        }
        let mut required = Vec::new();
        let unique: BTreeSet<Digest> = files.values().copied().chain(options.unserved_blobs()).collect();
        for digest in unique {
            if self.blobs.stat(digest).await?.is_none() {
                required.push(digest.to_hex());
            }
        }
        Ok(CreatedDeployment { url: self.edge.deployment_url(&id, &project), id: id.to_string(), required })
    }

    pub(crate) async fn upload_blob(
        self: &Arc<Self>,
        ctx: &Ctx,
        id: &str,
        digest: &str,
        content_length: Option<u64>,
        body: axum::body::Body,
    ) -> Result<bool, ApiError> {
        let (row, _) = self.deployment_for(ctx, id, Need::BUILD_DEPLOY, "upload to deployments").await?;
        let id = row.id.clone();
        let digest: Digest =
            digest.parse().map_err(|e: helix_core::digest::DigestError| ApiError::BadRequest(e.to_string()))?;
        let gc_guard = self.gc_lock.clone().read_owned().await;
        let digests = self.uploading_digests(&id).await?;
        let Some(&compressible) = digests.get(&digest) else {
            return Err(ApiError::Unprocessable(format!("digest {digest} is not a file of deployment {id}")));
        };
        let limit = self.limits.max_file_bytes;
        if content_length.is_some_and(|n| n > limit) {
            return Err(ApiError::TooLarge(format!("blob is larger than the limit of {limit} bytes per file")));
        }
        let mut stream = body.into_data_stream().map_err(std::io::Error::other).boxed();
        if self.blobs.stat(digest).await?.is_some() {
            // Stored already (by another deploy): read the body anyway, up
            // to the limit, so the client sees an answer, not a reset.
            let mut read = 0u64;
            while let Some(chunk) = stream.next().await {
                read += chunk.map_err(|e| ApiError::BadRequest(e.to_string()))?.len() as u64;
                if read > limit {
                    return Err(ApiError::TooLarge(format!("blob is larger than the limit of {limit} bytes per file")));
                }
            }
            return Ok(false);
        }
        let size = self.blobs.put_stream(digest, stream, limit).await?;
        if compressible && size >= variants::MIN_COMPRESS_BYTES as u64 {
            // Compress while the rest uploads; finalize then finds the
            // variants made (or makes what is still missing itself).
            // The task keeps holding GC off until its variants are written
            // and recorded, so GC never sees them half made.
            let cp = self.clone();
            tokio::spawn(async move {
                let _gc = gc_guard;
                if let Err(e) = cp.encodings_of(digest).await {
                    tracing::warn!(error = %e, %digest, "precompressing an upload failed; finalize will retry");
                }
            });
        }
        Ok(true)
    }

    /// Finalizes an upload: the deployment, and its last event's sequence
    /// number when this call made it ready (`None`: it was already).
    pub(crate) async fn finalize(&self, ctx: &Ctx, id: &str) -> Result<(DeploymentRow, Option<u64>), ApiError> {
        let (row, owner) = self.deployment_for(ctx, id, Need::BUILD_DEPLOY, "finalize deployments").await?;
        let id = row.id.clone();
        let _gc = self.gc_lock.read().await;
        let (Some(mut files), Some(options)) = (
            self.store.deployments().uploading_files(&id).await?,
            self.store.deployments().uploading_options(&id).await?,
        ) else {
            return Ok((self.finalized_already(&id).await?, None));
        };
        let mut sizes: BTreeMap<Digest, u64> = BTreeMap::new();
        let mut missing = Vec::new();
        for digest in files.values().copied().chain(options.unserved_blobs()).collect::<BTreeSet<_>>() {
            match self.blobs.stat(digest).await? {
                Some(info) => {
                    sizes.insert(digest, info.size);
                }
                None => missing.push(digest.to_hex()),
            }
        }
        if !missing.is_empty() {
            return Err(ApiError::MissingBlobs {
                detail: format!("{} blob(s) of deployment {id} have not been uploaded", missing.len()),
                missing,
            });
        }
        let routes_json = match files.get("/_routes.json") {
            Some(digest) => Some(self.blobs.get(*digest).await?.to_vec()),
            None => None,
        };
        let routes = self.compile_routes(&id, &mut files, &options).await?;
        let CompiledFunctions { functions, crons, environment } =
            self.compile_functions(&id, &options, routes_json.as_deref()).await?;
        let (functions, bundles) = self.bundle_functions(&id, row.project.as_str(), &options, functions).await?;
        let total: u64 = files.values().map(|d| sizes[d]).sum();
        if total > self.limits.max_total_bytes {
            let reason =
                format!("{total} bytes is over the limit of {} bytes per deployment", self.limits.max_total_bytes);
            self.store.deployments().fail_deployment(&id, &reason).await?;
            return Err(ApiError::TooLarge(reason));
        }
        let mut manifest = self.build_manifest(&id, row.project.clone(), row.created_at_ms, &files, &sizes).await?;
        let report = RoutesReport {
            platform: routes.table.platform,
            reason: routes.reason,
            redirects: routes.table.redirects.len(),
            headers: routes.table.headers.len(),
            diagnostics: routes.diagnostics,
        };
        manifest.routes = routes.table;
        manifest.function_sources = options.functions.clone();
        manifest.function_sources.extend(bundles);
        manifest.functions = functions;
        manifest.crons = crons;
        manifest.function_env = environment;
        let manifest_digest = self.blobs.put_bytes(manifest.to_json().into()).await?;
        // A denial leaves only the manifest blob, unreferenced: GC takes it.
        let next = self.remember_schedules(manifest_digest, &manifest.crons);
        if row.production_requested {
            self.decide_crons(ctx, &owner, crate::policy::deployment_input(&row), next).await?;
        }
        self.blobs.sync().await?;
        let report_json = serde_json::to_string(&report).map_err(|e| ApiError::Internal(e.to_string()))?;
        let detail = serde_json::json!({
            "production": row.production_requested,
            "alias": options.alias,
            "files": manifest.files.len(),
        });
        let audit = NewAudit { target: Some(id.as_str()), ..ctx.audit_on(&owner, "deploy", detail) };
        let ready = Ready {
            manifest: manifest_digest,
            total_bytes: total,
            routes_json: &report_json,
            alias: options.alias.as_deref(),
        };
        let outcome = self.store.deployments().finalize(&id, ready, &audit, now_ms()).await?;
        self.upload_sets.remove(&id);
        match outcome {
            Finalized::Now(row, seq) => Ok((row, Some(seq))),
            Finalized::Already(row) => Ok((row, None)),
            Finalized::NotUploading(_) => Ok((self.finalized_already(&id).await?, None)),
        }
    }

    /// Compiles the routing files (SPEC: per platform) and takes the ones it
    /// read out of the served files. A file the platform would refuse, or
    /// any rule not honored exactly under `strict`, fails the deployment.
    async fn compile_routes(
        &self,
        id: &DeploymentId,
        files: &mut BTreeMap<String, Digest>,
        options: &DeployOptions,
    ) -> Result<helix_config::Compiled, ApiError> {
        let mut project = helix_config::ProjectFiles::default();
        for (name, digest) in &options.config {
            project.root.insert(name.clone(), self.blobs.get(*digest).await?.to_vec());
        }
        for name in helix_config::PUBLISH_CONFIG_FILES {
            if let Some(digest) = files.get(&format!("/{name}")) {
                project.publish.insert((*name).to_owned(), self.blobs.get(*digest).await?.to_vec());
            }
        }
        let compiled = helix_config::compile(&project, options.compat);
        let refuse = compiled.rejected() || (options.strict && !compiled.diagnostics.is_empty());
        if refuse {
            let lines: Vec<String> = compiled.diagnostics.iter().map(ToString::to_string).collect();
            let why =
                if compiled.rejected() { "the routing files are invalid" } else { "strict: rules not honored exactly" };
            let reason = format!("{why}: {}", lines.join("; "));
            self.store.deployments().fail_deployment(id, &reason).await?;
            return Err(ApiError::Unprocessable(reason));
        }
        if compiled.table.platform != helix_core::routes::Platform::Helix {
            for name in helix_config::PUBLISH_CONFIG_FILES {
                files.remove(&format!("/{name}"));
            }
        }
        Ok(compiled)
    }

    /// Compiles the function sources into the deployment's functions and
    /// schedules; a source that cannot be a function, or a schedule its
    /// platform would refuse, fails the deployment, naming it.
    async fn compile_functions(
        &self,
        id: &DeploymentId,
        options: &DeployOptions,
        routes_json: Option<&[u8]>,
    ) -> Result<CompiledFunctions, ApiError> {
        if options.functions.is_empty() && !options.config.contains_key("vercel.json") {
            return Ok(CompiledFunctions::default());
        }
        let mut texts = BTreeMap::new();
        for (path, digest) in &options.functions {
            if helix_config::functions::is_module(path) {
                let bytes = self.blobs.get(*digest).await?;
                texts.insert(path.as_str(), String::from_utf8_lossy(&bytes).into_owned());
            }
        }
        let mut root = BTreeMap::new();
        for (name, digest) in &options.config {
            root.insert(name.clone(), self.blobs.get(*digest).await?.to_vec());
        }
        let routes_json = routes_json.map(String::from_utf8_lossy);
        let context = options.context.as_deref().unwrap_or("production");
        let src = helix_config::functions::FunctionSources {
            files: texts.iter().map(|(k, v)| (*k, v.as_str())).collect(),
            routes_json: routes_json.as_deref(),
            ..Default::default()
        }
        .with_config(&root, context, options.branch.as_deref());
        let compiled = helix_config::functions::compile(&src).and_then(|functions| {
            let (crons, diags) = helix_config::functions::crons(&src, &functions);
            match diags.first() {
                Some(d) => Err(d.to_string()),
                None => {
                    // Netlify's CONTEXT is the deployment's, fixed when it
                    // is made (a promoted preview keeps it, as there).
                    let mut environment = src.environment.clone();
                    environment.entry("CONTEXT".into()).or_insert_with(|| context.to_owned());
                    // Which branch's variables its instances get.
                    if let Some(branch) = &options.branch {
                        environment.entry("BRANCH".into()).or_insert_with(|| branch.clone());
                    }
                    Ok(CompiledFunctions { functions, crons, environment })
                }
            }
        });
        match compiled {
            Ok(ok) => Ok(ok),
            Err(why) => {
                let reason = format!("functions: {why}");
                self.store.deployments().fail_deployment(id, &reason).await?;
                Err(ApiError::Unprocessable(reason))
            }
        }
    }

    /// Bundles every function entry with esbuild in a sandbox (the npm
    /// dependencies of a `package.json` among the sources installed
    /// first) and points the functions at their bundles. Without esbuild
    /// on the server, JavaScript runs as it is and TypeScript fails the
    /// deploy, saying what to install.
    async fn bundle_functions(
        &self,
        id: &DeploymentId,
        project: &str,
        options: &DeployOptions,
        mut functions: Vec<helix_core::functions::Function>,
    ) -> Result<(Vec<helix_core::functions::Function>, BTreeMap<String, Digest>), ApiError> {
        let mut entries: Vec<String> = Vec::new();
        for f in &functions {
            let files = std::iter::once(f.entry.clone()).chain(f.pages_routes.iter().map(|r| r.file.clone()));
            for file in files {
                if !entries.contains(&file) {
                    entries.push(file);
                }
            }
        }
        if entries.is_empty() {
            return Ok((functions, BTreeMap::new()));
        }
        let fail = |reason: String| async move {
            self.store.deployments().fail_deployment(id, &reason).await?;
            Err::<(Vec<helix_core::functions::Function>, BTreeMap<String, Digest>), _>(ApiError::Unprocessable(reason))
        };
        if !helix_runtime::bundle::available() {
            if let Some(ts) =
                entries.iter().find(|e| [".ts", ".tsx", ".mts", ".cts", ".jsx"].iter().any(|x| e.ends_with(x)))
            {
                return fail(format!("functions: {ts} needs bundling, and esbuild is not installed on the server (npm install --global esbuild)")).await;
            }
            return Ok((functions, BTreeMap::new()));
        }
        let mut sources = BTreeMap::new();
        for (path, digest) in &options.functions {
            sources.insert(path.clone(), self.blobs.get(*digest).await?);
        }
        let work = self.functions_dir.join("work").join(id.as_str());
        let cache = self.functions_dir.join("npm-cache").join(project);
        let bundled = match helix_runtime::bundle::bundle(&work, &cache, &sources, &entries).await {
            Ok(b) => b,
            Err(why) => return fail(format!("functions: bundling failed:\n{why}")).await,
        };
        let mut bundles = BTreeMap::new();
        for (path, bytes) in bundled {
            let digest = self.blobs.put_bytes(bytes.into()).await?;
            bundles.insert(path, digest);
        }
        for f in &mut functions {
            f.entry = helix_runtime::bundle::bundle_path(&f.entry);
            for r in &mut f.pages_routes {
                r.file = helix_runtime::bundle::bundle_path(&r.file);
            }
        }
        Ok((functions, bundles))
    }

    /// The digests an uploading deployment may receive; 404 for an unknown
    /// deployment, 409 for one no longer uploading. The set is read from the store once per
    /// deployment and then served from memory: a deploy sends one request
    /// per blob, and re-reading the whole file table each time would make
    /// a deploy quadratic in its file count.
    async fn uploading_digests(&self, id: &DeploymentId) -> Result<Arc<crate::UploadSet>, ApiError> {
        let not_uploading =
            || ApiError::Conflict(format!("deployment {id} is not accepting uploads (it is finalized or failed)"));
        match self.store.deployments().deployment(id.as_str()).await? {
            None => return Err(ApiError::NotFound(format!("deployment {id} not found"))),
            Some(row) if row.state != DeploymentState::Uploading => {
                self.upload_sets.remove(id);
                return Err(not_uploading());
            }
            Some(_) => {}
        }
        if let Some(set) = self.upload_sets.get(id) {
            return Ok(set);
        }
        let files = self.store.deployments().uploading_files(id).await?.ok_or_else(not_uploading)?;
        let options = self.store.deployments().uploading_options(id).await?.ok_or_else(not_uploading)?;
        let mut set = crate::UploadSet::new();
        for (path, digest) in files {
            *set.entry(digest).or_default() |= variants::is_compressible(&content_type_of(&path));
        }
        for digest in options.unserved_blobs() {
            set.entry(digest).or_default();
        }
        let set = Arc::new(set);
        self.upload_sets.insert(id.clone(), set.clone());
        Ok(set)
    }

    async fn finalized_already(&self, id: &DeploymentId) -> Result<DeploymentRow, ApiError> {
        match self.store.deployments().deployment(id.as_str()).await? {
            Some(row) if row.state == DeploymentState::Ready => Ok(row),
            Some(_) => Err(ApiError::Conflict(format!("deployment {id} failed and cannot be finalized; deploy again"))),
            None => Err(ApiError::NotFound(format!("deployment {id} not found"))),
        }
    }

    async fn build_manifest(
        &self,
        id: &DeploymentId,
        project: ProjectName,
        created_at_ms: i64,
        files: &BTreeMap<String, Digest>,
        sizes: &BTreeMap<Digest, u64>,
    ) -> Result<Manifest, ApiError> {
        let content_types: BTreeMap<&str, String> = files.keys().map(|p| (p.as_str(), content_type_of(p))).collect();
        let to_compress: BTreeSet<Digest> = files
            .iter()
            .filter(|(p, d)| {
                variants::is_compressible(&content_types[p.as_str()])
                    && sizes[*d] >= variants::MIN_COMPRESS_BYTES as u64
            })
            .map(|(_, d)| *d)
            .collect();
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        let encodings: BTreeMap<Digest, Encodings> = futures_util::stream::iter(to_compress)
            .map(|digest| async move { self.encodings_of(digest).await.map(|e| (digest, e)) })
            .buffer_unordered(parallel)
            .try_collect()
            .await?;
        let files = files
            .iter()
            .map(|(path, digest)| {
                let entry = FileEntry {
                    digest: *digest,
                    size: sizes[digest],
                    content_type: content_types[path.as_str()].clone(),
                    encodings: encodings.get(digest).cloned().unwrap_or_default(),
                };
                (path.clone(), entry)
            })
            .collect();
        Ok(Manifest {
            version: MANIFEST_VERSION,
            deployment: id.clone(),
            project,
            created_at_ms,
            files,
            routes: Default::default(),
            function_sources: BTreeMap::new(),
            functions: Vec::new(),
            crons: Vec::new(),
            function_env: Default::default(),
            legacy_routes: None,
        })
    }

    /// The br and gzip variants of a blob: reused when made before (and
    /// still stored), otherwise compressed now.
    async fn encodings_of(&self, digest: Digest) -> Result<Encodings, ApiError> {
        let mut enc = Encodings::default();
        for (encoding, variant, size) in self.store.variants(digest).await? {
            if self.blobs.stat(variant).await?.is_none() {
                continue;
            }
            let v = Some(Variant { digest: variant, size });
            match encoding.as_str() {
                "br" => enc.br = v,
                "gzip" => enc.gzip = v,
                _ => {}
            }
        }
        if enc.br.is_some() || enc.gzip.is_some() {
            return Ok(enc);
        }
        let bytes = self.blobs.get(digest).await?;
        let (br, gz) = self
            .compressor
            .compress(bytes)
            .await
            .ok_or_else(|| ApiError::Internal("the compression pool has stopped".into()))?;
        let mut made = Vec::new();
        for (name, bytes, slot) in [("br", br, &mut enc.br), ("gzip", gz, &mut enc.gzip)] {
            if let Some(bytes) = bytes {
                let size = bytes.len() as u64;
                let variant = self.blobs.put_bytes(bytes.into()).await?;
                made.push((name, variant, size));
                *slot = Some(Variant { digest: variant, size });
            }
        }
        self.store.put_variants(digest, &made).await?;
        Ok(enc)
    }

    /// The deployment `id` and its project, when the caller may do `need`
    /// on it. A build's token reaches only the deployment it created.
    pub(crate) async fn deployment_for(
        &self,
        ctx: &Ctx,
        id: &str,
        need: Need,
        what: &str,
    ) -> Result<(DeploymentRow, ProjectRef), ApiError> {
        let id = DeploymentId::parse(id).map_err(|e| ApiError::NotFound(e.to_string()))?;
        let missing = || ApiError::NotFound(format!("deployment {id} not found"));
        let row = self.store.deployments().deployment(id.as_str()).await?.ok_or_else(missing)?;
        let project = self.store.identity().project_ref(row.project.as_str()).await?.ok_or_else(missing)?;
        if ctx.actor.role_on(&project).is_none() {
            return Err(missing());
        }
        ctx.check(&project, need, what)?;
        if ctx.actor.token.build_id.is_some() && ctx.actor.token.deployment_id.as_deref() != Some(id.as_str()) {
            // Its own deployment is bound after the token was read: look again.
            let bound = self.store.identity().token(&ctx.actor.token.id).await?.and_then(|t| t.deployment_id);
            if bound.as_deref() != Some(id.as_str()) {
                return Err(ApiError::Forbidden(format!("a build's token reaches only its own deployment, not {id}")));
            }
        }
        Ok((row, project))
    }

    /// A page of a project's ready deployments, newest first: at most
    /// `limit` (default 100, at most 1,000), older than `before`.
    pub(crate) async fn list_deployments(
        &self,
        ctx: &Ctx,
        project: &str,
        before: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Vec<helix_core::api::Deployment>, ApiError> {
        let project = self.project_for(ctx, project, Need::READ, "read deployments").await?;
        let limit = limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::BadRequest(format!("limit must be 1 to 1000, not {limit}")));
        }
        if let Some(before) = before {
            DeploymentId::parse(before).map_err(|e| ApiError::BadRequest(format!("before: {e}")))?;
        }
        let rows = self.store.deployments().ready_deployments_page(&project.id, before, limit).await?;
        Ok(rows.iter().map(|r| self.view(r)).collect())
    }
}

/// The body of `POST /projects/{p}/deployments`, checked whole: the
/// request, its normalized file table and its options. Any bad entry fails
/// it, naming the entry.
pub(crate) fn parse_create(
    body: &[u8],
    limits: &Limits,
) -> Result<(CreateDeployment, BTreeMap<String, Digest>, DeployOptions), ApiError> {
    let req: CreateDeployment = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("request body is not a valid deployment: {e}")))?;
    let files = validate_files(&req.files, !req.config.is_empty() || !req.functions.is_empty(), limits)?;
    let options = validate_options(&req)?;
    Ok((req, files, options))
}

/// [`parse_create`] for the fuzzer: the error as its message.
pub fn check_create_body(body: &[u8], limits: &Limits) -> Result<usize, String> {
    parse_create(body, limits).map(|(_, files, _)| files.len()).map_err(|e| e.to_string())
}

/// Normalizes paths and parses digests; any bad entry fails the whole
/// request, naming the entry.
/// A deployment may have no files only when it carries routing config
/// (a redirect-only project) or functions.
fn validate_files(
    raw: &BTreeMap<String, String>,
    has_config_or_functions: bool,
    limits: &Limits,
) -> Result<BTreeMap<String, Digest>, ApiError> {
    if raw.is_empty() && !has_config_or_functions {
        return Err(ApiError::BadRequest("a deployment needs at least one file".into()));
    }
    if raw.len() > limits.max_files {
        return Err(ApiError::TooLarge(format!(
            "{} files is over the limit of {} files per deployment",
            raw.len(),
            limits.max_files
        )));
    }
    let mut files = BTreeMap::new();
    let mut spelled: BTreeMap<String, &str> = BTreeMap::new();
    for (path, digest) in raw {
        let norm = SitePath::parse(path).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let digest: Digest = digest
            .parse()
            .map_err(|e: helix_core::digest::DigestError| ApiError::BadRequest(format!("file {path:?}: {e}")))?;
        if let Some(first) = spelled.insert(norm.as_str().to_owned(), path) {
            return Err(ApiError::BadRequest(format!(
                "paths {first:?} and {path:?} are the same file {norm} after normalization"
            )));
        }
        files.insert(norm.as_str().to_owned(), digest);
    }
    Ok(files)
}

/// Most function source files one deployment may carry.
const MAX_FUNCTION_SOURCES: usize = 10_000;

/// Config file names, digests and the compat setting of a create request.
fn validate_options(req: &CreateDeployment) -> Result<DeployOptions, ApiError> {
    let mut config = BTreeMap::new();
    for (name, digest) in &req.config {
        if !helix_config::ROOT_CONFIG_FILES.contains(&name.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "config file {name:?} is not one HelixStack reads (expected one of {})",
                helix_config::ROOT_CONFIG_FILES.join(", ")
            )));
        }
        let digest: Digest = digest
            .parse()
            .map_err(|e: helix_core::digest::DigestError| ApiError::BadRequest(format!("config {name:?}: {e}")))?;
        config.insert(name.clone(), digest);
    }
    let compat = match req.compat.as_deref() {
        None => None,
        Some(c) => Some(helix_core::routes::Platform::parse(c).ok_or_else(|| {
            ApiError::BadRequest(format!("compat {c:?} is not one of {}", helix_core::routes::Platform::NAMES))
        })?),
    };
    if let Some(alias) = &req.alias {
        let label = !alias.is_empty()
            && alias.len() <= helix_core::hosts::MAX_ALIAS_LEN
            && alias.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !alias.starts_with('-')
            && !alias.ends_with('-')
            && !alias.contains("--");
        if !label {
            return Err(ApiError::BadRequest(format!(
                "alias {alias:?} must be 1-{} lowercase letters, digits and single hyphens",
                helix_core::hosts::MAX_ALIAS_LEN
            )));
        }
    }
    if req.functions.len() > MAX_FUNCTION_SOURCES {
        return Err(ApiError::TooLarge(format!(
            "{} function sources is over the limit of {MAX_FUNCTION_SOURCES}",
            req.functions.len()
        )));
    }
    let mut functions = BTreeMap::new();
    for (path, digest) in &req.functions {
        let norm = SitePath::parse(path).map_err(|e| ApiError::BadRequest(format!("function source: {e}")))?;
        let digest: Digest = digest.parse().map_err(|e: helix_core::digest::DigestError| {
            ApiError::BadRequest(format!("function source {path:?}: {e}"))
        })?;
        functions.insert(norm.as_str().trim_start_matches('/').to_owned(), digest);
    }
    let context = match req.context.as_deref() {
        None if req.production => "production",
        None => "deploy-preview",
        Some(c) => helix_config::netlify::CONTEXTS.iter().copied().find(|known| *known == c).ok_or_else(|| {
            ApiError::BadRequest(format!("context {c:?} is not one of {}", helix_config::netlify::CONTEXTS.join(", ")))
        })?,
    };
    if let Some(branch) = &req.branch
        && (branch.is_empty() || branch.len() > 255 || branch.chars().any(char::is_control))
    {
        return Err(ApiError::BadRequest("branch must be 1-255 characters, none of them control characters".into()));
    }
    Ok(DeployOptions {
        config,
        compat,
        strict: req.strict,
        alias: req.alias.clone(),
        functions,
        context: Some(context.to_owned()),
        branch: req.branch.clone(),
    })
}

/// Content type by extension; text types carry `charset=utf-8`.
pub(crate) fn content_type_of(path: &str) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let essence = mime.essence_str();
    let text =
        mime.type_() == "text" || matches!(essence, "application/javascript" | "application/json" | "image/svg+xml");
    if text && mime.get_param("charset").is_none() && essence != "image/svg+xml" {
        format!("{essence}; charset=utf-8")
    } else {
        essence.to_owned()
    }
}

impl ControlPlane {
    /// A deployment as the API shows it.
    pub(crate) fn view(&self, row: &DeploymentRow) -> helix_core::api::Deployment {
        let url = self.edge.deployment_url(&row.id, &row.project);
        let production_url = Some(self.edge.production_url(&row.project));
        helix_core::api::Deployment {
            id: row.id.to_string(),
            project: row.project.to_string(),
            state: row.state,
            url,
            production: row.is_production,
            production_url,
            file_count: row.file_count as u64,
            total_bytes: row.total_bytes as u64,
            created_at_ms: row.created_at_ms,
            ready_at_ms: row.ready_at_ms,
            routes: serde_json::from_str(&row.routes_json).ok(),
            propagation: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::content_type_of;

    #[test]
    fn content_types() {
        assert_eq!(content_type_of("/index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type_of("/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type_of("/logo.png"), "image/png");
        assert_eq!(content_type_of("/logo.svg"), "image/svg+xml");
        assert_eq!(content_type_of("/data.json"), "application/json; charset=utf-8");
        assert_eq!(content_type_of("/blob"), "application/octet-stream");
    }
}

/// A deployment's functions, schedules and function environment.
#[derive(Default)]
struct CompiledFunctions {
    functions: Vec<helix_core::functions::Function>,
    crons: Vec<helix_core::functions::Cron>,
    environment: BTreeMap<String, String>,
}
