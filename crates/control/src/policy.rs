//! Policy: an organisation's Rego module (the `regorus` engine), evaluated
//! at every decision point.
//!
//! A module is `package helix` and refuses through a set of messages,
//! `deny contains msg if { … }`. Each decision builds the input document
//! below ([`INPUT_VERSION`]); any message denies (`403`, the messages in
//! `detail`, audited as `policy.deny`). A module that fails to evaluate, or
//! runs past [`EVAL_LIMIT`], denies too: the check fails closed. The
//! compiled module is cached per organisation and recompiled when its
//! stored version changes (another server may have set it).
//!
//! Input document, version 1:
//!
//! ```json
//! { "version": 1, "action": "deploy",
//!   "actor": { "kind": "user", "user": "ann", "org": "acme", "role": "developer",
//!              "token": "01j…", "server_admin": false },
//!   "project": "shop", "environment": "production",
//!   "deployment": { "id": "…", "branch": "main", "commit": "…", "source": "git",
//!                   "context": "production", "build_status": "building", "production": true },
//!   "request": { … what the action was asked: a role, a variable's name, weights … },
//!   "time": { "unix_ms": 1796300000000, "weekday": "Thursday", "hour": 14, "minute": 3 } }
//! ```

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use helix_core::identity::Role;
use helix_store::{NewAudit, ProjectRef};
use serde_json::{Value, json};

use crate::access::{Ctx, Need};
use crate::problem::ApiError;
use crate::{ControlPlane, now_ms};

/// The version of the input document (above).
pub const INPUT_VERSION: u32 = 1;

/// Longest one evaluation may run; past it the decision denies.
pub const EVAL_LIMIT: Duration = Duration::from_millis(50);

/// Largest module accepted.
const MAX_POLICY_BYTES: usize = 256 * 1024;

/// Setting and removing the policy take an owner's role; reading and
/// testing it, an admin's.
pub(crate) const OWN: Need = Need { role: Role::Owner, ..Need::MANAGE };
pub(crate) const READ_POLICY: Need = Need { role: Role::Admin, ..Need::READ };

/// Compiles a module; the engine's error (with its line) when it is not
/// valid Rego or not `package helix`.
pub fn compile(source: &str) -> Result<Compiled, String> {
    if source.len() > MAX_POLICY_BYTES {
        return Err(format!("a policy is at most {MAX_POLICY_BYTES} bytes"));
    }
    // The one builtin that builds a value of any size from a small one,
    // before the engine's timer can look: refused, not run.
    if source.contains("numbers.range") {
        return Err("numbers.range is not available in policies (it can build values of any size)".into());
    }
    let mut engine = regorus::Engine::new();
    engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
        limit: EVAL_LIMIT,
        check_interval: NonZeroU32::new(32).expect("not zero"),
    });
    let package = engine.add_policy("policy.rego".into(), source.into()).map_err(|e| e.to_string())?;
    if package != "data.helix" {
        return Err(format!("the policy must be `package helix`, not `{}`", package.trim_start_matches("data.")));
    }
    // A module without `deny` (yet) allows everything.
    let has_deny = engine.has_declared_rule_rooted_at("policy.rego", "deny").map_err(|e| e.to_string())?;
    Ok(Compiled { engine, has_deny })
}

/// A compiled module, and whether it declares `deny` at all.
#[derive(Debug)]
pub struct Compiled {
    engine: regorus::Engine,
    has_deny: bool,
}

/// Evaluates `data.helix.deny` for `input`: the messages (none: allowed).
pub fn evaluate(compiled: &Compiled, input: &Value) -> Result<Vec<String>, Bounded> {
    if !compiled.has_deny {
        return Ok(Vec::new());
    }
    let mut engine = compiled.engine.clone();
    engine.set_input(regorus::Value::from(input.clone()));
    let denied = engine.eval_rule("data.helix.deny".into()).map_err(|e| {
        if e.downcast_ref::<regorus::LimitError>().is_some() {
            Bounded::TooLong
        } else {
            Bounded::Failed(e.to_string())
        }
    })?;
    if denied == regorus::Value::Undefined {
        return Ok(Vec::new());
    }
    let set = denied
        .as_set()
        .map_err(|_| Bounded::Failed("`deny` must be a set of messages (`deny contains msg if …`)".to_owned()))?;
    Ok(set
        .iter()
        .map(|m| match m.as_string() {
            Ok(s) => s.to_string(),
            Err(_) => m.to_json_str().unwrap_or_default(),
        })
        .collect())
}

/// An organisation's compiled module, of one stored version.
pub(crate) struct Loaded {
    version: i64,
    engine: Arc<Compiled>,
    /// It ran past its limit once: every decision denies without running
    /// it again, until the module is replaced.
    tripped: std::sync::atomic::AtomicBool,
}

/// Compiled modules by organisation id.
pub(crate) struct PolicyCache {
    loaded: Mutex<HashMap<String, Arc<Loaded>>>,
    /// Trial runs of modules being set, one at a time (a runaway one
    /// holds a thread until its builtins return).
    trials: tokio::sync::Semaphore,
}

impl PolicyCache {
    pub(crate) fn new() -> PolicyCache {
        PolicyCache { loaded: Mutex::default(), trials: tokio::sync::Semaphore::new(1) }
    }
}

/// [`evaluate`] off the async threads, bounded in wall time too: the
/// engine's own timer stops interpretation, not a builtin building a
/// huge value (`numbers.range(1, 1e9)`), so past the limit the decision
/// gives up on it.
pub async fn bounded(engine: Arc<Compiled>, input: Value) -> Result<Vec<String>, Bounded> {
    let run = tokio::task::spawn_blocking(move || evaluate(&engine, &input));
    match tokio::time::timeout(EVAL_LIMIT * 2, run).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => Err(Bounded::Failed(format!("the evaluation crashed: {e}"))),
        Err(_) => Err(Bounded::TooLong),
    }
}

/// Why a bounded evaluation gave no answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Bounded {
    Failed(String),
    TooLong,
}

/// The inputs a module must decide within its limit before it is set:
/// one per decision point, with nothing but the action.
const TRIAL_ACTIONS: [&str; 12] = [
    "deploy",
    "promote",
    "rollback",
    "env.write",
    "env.read",
    "secret.read",
    "token.create",
    "member.change",
    "split.change",
    "cron.change",
    "domain.change",
    "policy.change",
];

/// The part of the input a decision point knows.
#[derive(Default)]
pub(crate) struct Decision<'a> {
    pub action: &'a str,
    pub project: Option<&'a ProjectRef>,
    pub environment: Option<&'a str>,
    pub deployment: Option<Value>,
    pub request: Value,
}

/// `time` in the input: UTC.
fn time_of(unix_ms: i64) -> Value {
    const WEEKDAYS: [&str; 7] = ["Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday"];
    let minutes = unix_ms.div_euclid(60_000);
    let days = minutes.div_euclid(1440);
    let of_day = minutes.rem_euclid(1440);
    json!({
        "unix_ms": unix_ms,
        "weekday": WEEKDAYS[days.rem_euclid(7) as usize],
        "hour": of_day / 60,
        "minute": of_day % 60,
    })
}

impl ControlPlane {
    /// The organisation's compiled module, if it has one.
    async fn policy_of(&self, org_id: &str) -> Result<Option<Arc<Loaded>>, ApiError> {
        let Some(version) = self.store.policies().policy_version(org_id).await? else { return Ok(None) };
        if let Some(loaded) = self.policies.loaded.lock().unwrap_or_else(|p| p.into_inner()).get(org_id)
            && loaded.version == version
        {
            return Ok(Some(loaded.clone()));
        }
        let Some(stored) = self.store.policies().policy(org_id).await? else { return Ok(None) };
        let engine = Arc::new(compile(&stored.source).map_err(|e| ApiError::Internal(format!("stored policy: {e}")))?);
        let loaded = Arc::new(Loaded { version: stored.version, engine, tripped: Default::default() });
        self.policies.loaded.lock().unwrap_or_else(|p| p.into_inner()).insert(org_id.to_owned(), loaded.clone());
        Ok(Some(loaded))
    }

    /// Runs a module being set on every trial input, one trial at a time;
    /// the 400 naming the first it could not decide in time.
    async fn trial(&self, engine: &Arc<Compiled>) -> Result<(), ApiError> {
        let _one = self.policies.trials.acquire().await.map_err(|e| ApiError::Internal(e.to_string()))?;
        for action in TRIAL_ACTIONS {
            let input = document(&Decision { action, ..Decision::default() }, json!({}), now_ms());
            if bounded(engine.clone(), input).await == Err(Bounded::TooLong) {
                return Err(ApiError::BadRequest(format!(
                    "the policy runs longer than {} ms on a `{action}` input with nothing else in it",
                    EVAL_LIMIT.as_millis()
                )));
            }
        }
        Ok(())
    }

    /// The whole input document of a decision by the caller.
    pub(crate) fn input(&self, ctx: &Ctx, d: &Decision<'_>) -> Value {
        let t = &ctx.actor.token;
        let role = d.project.and_then(|p| ctx.actor.role_on(p)).or_else(|| ctx.actor.org_role());
        let actor = json!({
            "kind": if t.build_id.is_some() { "build" } else { "user" },
            "user": t.user, "org": t.org, "role": role, "token": t.id, "server_admin": t.server_admin,
        });
        document(d, actor, ctx.now_ms)
    }

    /// Runs the policy of `org_id` on `input`: `Ok` when it allows, the 403
    /// (already audited) when it denies or cannot be evaluated.
    pub(crate) async fn decide(&self, org_id: &str, audit_as: NewAudit<'_>, input: &Value) -> Result<(), ApiError> {
        use std::sync::atomic::Ordering;
        let Some(loaded) = self.policy_of(org_id).await? else { return Ok(()) };
        let too_long = || {
            format!(
                "the policy (version {}) ran past its {} ms limit, so it denies until it is replaced",
                loaded.version,
                EVAL_LIMIT.as_millis()
            )
        };
        let messages = if loaded.tripped.load(Ordering::Relaxed) {
            vec![too_long()]
        } else {
            match bounded(loaded.engine.clone(), input.clone()).await {
                Ok(m) if m.is_empty() => return Ok(()),
                Ok(m) => m,
                Err(Bounded::Failed(e)) => vec![format!("the policy could not be evaluated, so it denies: {e}")],
                Err(Bounded::TooLong) => {
                    loaded.tripped.store(true, Ordering::Relaxed);
                    vec![too_long()]
                }
            }
        };
        let detail = json!({ "decision": input["action"], "messages": messages });
        let entry = NewAudit { action: "policy.deny", outcome: "denied", detail, ..audit_as };
        self.store.audit().append_audit(&entry).await?;
        Err(ApiError::PolicyDenied(format!("denied by policy: {}", messages.join("; "))))
    }

    /// [`ControlPlane::decide`] for the caller of a request, in the
    /// organisation of `d.project` (or the caller's).
    pub(crate) async fn decide_for(&self, ctx: &Ctx, d: Decision<'_>) -> Result<(), ApiError> {
        let input = self.input(ctx, &d);
        let (org_id, audit) = match d.project {
            Some(p) => (p.org_id.as_str(), ctx.audit_on(p, d.action, Value::Null)),
            None => (ctx.actor.org_id(), ctx.audit(d.action, Value::Null)),
        };
        self.decide(org_id, audit, &input).await
    }

    pub(crate) async fn show_policy(&self, ctx: &Ctx) -> Result<helix_core::api::Policy, ApiError> {
        ctx.check_org(READ_POLICY, "read the policy")?;
        let stored = self.store.policies().policy(ctx.actor.org_id()).await?;
        let stored = stored.ok_or_else(|| ApiError::NotFound(format!("{} has no policy", ctx.actor.token.org)))?;
        Ok(helix_core::api::Policy {
            source: stored.source,
            version: stored.version,
            updated_at_ms: stored.updated_at_ms,
            updated_by: stored.updated_by,
        })
    }

    /// `PUT /policy`: replaces the organisation's module.
    pub(crate) async fn set_policy(&self, ctx: &Ctx, body: &[u8]) -> Result<Option<i64>, ApiError> {
        ctx.check_org(OWN, "change the policy")?;
        let req: helix_core::api::SetPolicy = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("request body is not a valid policy: {e}")))?;
        self.replace_policy(ctx, Some(&req.source)).await
    }

    pub(crate) async fn remove_policy(&self, ctx: &Ctx) -> Result<Option<i64>, ApiError> {
        ctx.check_org(OWN, "change the policy")?;
        self.replace_policy(ctx, None).await
    }

    /// Replaces the module (`None`: removes it), once the current one
    /// allows `policy.change`.
    async fn replace_policy(&self, ctx: &Ctx, source: Option<&str>) -> Result<Option<i64>, ApiError> {
        if let Some(source) = source {
            let engine =
                compile(source).map_err(|e| ApiError::BadRequest(format!("the policy does not compile: {e}")))?;
            self.trial(&Arc::new(engine)).await?;
        }
        // The server admin's changes are exempt: a policy that denies
        // every change must not lock its organisation out for good.
        if !ctx.actor.token.server_admin {
            let request = json!({ "removed": source.is_none(), "bytes": source.map(str::len) });
            self.decide_for(ctx, Decision { action: "policy.change", request, ..Decision::default() }).await?;
        }
        let detail = json!({ "removed": source.is_none(), "sha256": source.map(|s| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(s))) });
        let audit = ctx.audit("policy.change", detail);
        let version = self
            .store
            .policies()
            .set_policy(ctx.actor.org_id(), source, &ctx.actor.token.user, &audit, ctx.now_ms)
            .await?;
        self.policies.loaded.lock().unwrap_or_else(|p| p.into_inner()).remove(ctx.actor.org_id());
        Ok(version)
    }

    /// Evaluates `input` (completed with `version` and `time` when absent)
    /// against `source`, or the organisation's module.
    pub(crate) async fn test_policy(&self, ctx: &Ctx, body: &[u8]) -> Result<helix_core::api::PolicyVerdict, ApiError> {
        ctx.check_org(READ_POLICY, "test the policy")?;
        let req: helix_core::api::TestPolicy = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("request body is not a valid policy test: {e}")))?;
        let engine = match &req.source {
            Some(source) => Arc::new(
                compile(source).map_err(|e| ApiError::BadRequest(format!("the policy does not compile: {e}")))?,
            ),
            None => self
                .policy_of(ctx.actor.org_id())
                .await?
                .ok_or_else(|| {
                    ApiError::NotFound(format!("{} has no policy; send one as `source`", ctx.actor.token.org))
                })?
                .engine
                .clone(),
        };
        let mut input = req.input;
        let Some(fields) = input.as_object_mut() else {
            return Err(ApiError::BadRequest("`input` must be a JSON object".into()));
        };
        fields.entry("version").or_insert(json!(INPUT_VERSION));
        fields.entry("time").or_insert_with(|| time_of(now_ms()));
        let _one = self.policies.trials.acquire().await.map_err(|e| ApiError::Internal(e.to_string()))?;
        let started = std::time::Instant::now();
        let outcome = bounded(engine, input).await;
        let eval_us = started.elapsed().as_micros() as u64;
        match outcome {
            Ok(messages) => Ok(helix_core::api::PolicyVerdict { allowed: messages.is_empty(), messages, eval_us }),
            Err(Bounded::Failed(e)) => {
                Err(ApiError::Unprocessable(format!("the policy could not be evaluated (it would deny): {e}")))
            }
            Err(Bounded::TooLong) => Err(ApiError::Unprocessable(format!(
                "the policy ran past its {} ms limit on this input (it would deny)",
                EVAL_LIMIT.as_millis()
            ))),
        }
    }
}

/// `deployment` in the input, of a stored deployment.
pub(crate) fn deployment_input(row: &helix_store::DeploymentRow) -> Value {
    json!({
        "id": row.id, "branch": row.branch, "commit": row.commit_sha, "source": row.source,
        "context": row.context, "state": row.state, "production": row.is_production,
    })
}

/// The input document of `d` by `actor` at `at_ms`.
pub(crate) fn document(d: &Decision<'_>, actor: Value, at_ms: i64) -> Value {
    json!({
        "version": INPUT_VERSION,
        "action": d.action,
        "actor": actor,
        "project": d.project.map(|p| p.name.as_str()),
        "environment": d.environment,
        "deployment": d.deployment.clone().unwrap_or(Value::Null),
        "request": d.request,
        "time": time_of(at_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module that runs for ever on a big enough `input.request.xs` (for
    /// tests).
    const RUNAWAY: &str = "package helix\n\ndeny contains msg if {\n\txs := input.request.xs\n\tn := count([a | some a in xs; some b in xs; some c in xs; a + b == c])\n\tmsg := sprintf(\"%v\", [n])\n}\n";

    #[test]
    fn messages_deny_and_the_rest_allows() {
        let engine = compile(
            "package helix\n\ndeny contains msg if {\n  input.action == \"promote\"\n  input.deployment.branch != \"main\"\n  msg := sprintf(\"production comes from main, not %v\", [input.deployment.branch])\n}\n",
        )
        .unwrap();
        let input = json!({ "action": "promote", "deployment": { "branch": "feature" } });
        assert_eq!(evaluate(&engine, &input).unwrap(), vec!["production comes from main, not feature"]);
        assert!(
            evaluate(&engine, &json!({ "action": "promote", "deployment": { "branch": "main" } })).unwrap().is_empty()
        );
        assert!(evaluate(&engine, &json!({ "action": "deploy" })).unwrap().is_empty());
        let nothing = compile("package helix\n\nallowed_branches := {\"main\"}\n").unwrap();
        assert!(evaluate(&nothing, &json!({ "action": "deploy" })).unwrap().is_empty(), "no deny: allowed");
    }

    #[test]
    fn bad_modules_are_refused_with_the_line() {
        let err = compile("package helix\n\ndeny contains msg if {\n  input.x ==\n}\n").unwrap_err();
        assert!(err.contains("policy.rego:5:1") && err.contains("expecting expression"), "{err}");
        assert!(compile("package other\n").unwrap_err().contains("package helix"));
        assert!(compile("package helix\nallow { true }\n").is_err(), "Rego v1 only");
    }

    #[tokio::test]
    async fn a_module_that_runs_long_fails_instead() {
        // An interpreted loop over the input is stopped by the engine's
        // own timer, near its limit.
        let looping = compile(RUNAWAY).unwrap();
        let input = json!({ "request": { "xs": (0..300).collect::<Vec<_>>() } });
        let started = std::time::Instant::now();
        assert_eq!(bounded(Arc::new(looping), input).await, Err(Bounded::TooLong));
        assert!(started.elapsed() < EVAL_LIMIT * 4, "given up on near its limit: {:?}", started.elapsed());
        assert!(compile("package helix\nx := numbers.range(1, 9)\n").unwrap_err().contains("numbers.range"));
    }

    #[test]
    fn time_is_given_in_utc() {
        // 2026-12-03 (a Thursday) 14:03 UTC.
        let t = time_of(1_796_306_580_000);
        assert_eq!(
            (t["weekday"].as_str(), t["hour"].as_i64(), t["minute"].as_i64()),
            (Some("Thursday"), Some(14), Some(3))
        );
        assert_eq!(time_of(0)["weekday"], "Thursday");
    }
}
