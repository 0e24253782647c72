//! What production serves: promote, rollback and traffic splits. Each
//! moves pointers in one transaction with its event.

use helix_core::ProjectName;
use helix_core::api::{Rollback, SetSplit, Split};
use helix_store::{DeploymentRow, ProjectRef};

use crate::access::{Ctx, Need};
use crate::policy::{Decision, deployment_input};
use crate::problem::ApiError;
use crate::{ControlPlane, now_ms};

impl ControlPlane {
    pub(crate) async fn promote(&self, ctx: &Ctx, id: &str) -> Result<(DeploymentRow, Option<u64>), ApiError> {
        let (row, project) = self.deployment_for(ctx, id, Need::DEPLOY, "promote").await?;
        let decision = Decision {
            action: "promote",
            project: Some(&project),
            environment: Some("production"),
            deployment: Some(deployment_input(&row)),
            request: serde_json::json!({}),
        };
        self.decide_for(ctx, decision).await?;
        let next = self.schedules_of(row.manifest_digest.as_deref()).await?;
        self.decide_crons(ctx, &project, deployment_input(&row), next).await?;
        let audit = ctx.audit_on(&project, "promote", serde_json::json!({}));
        Ok(self.store.deployments().promote(row.id.as_str(), &audit, now_ms()).await?)
    }

    pub(crate) async fn rollback(
        &self,
        ctx: &Ctx,
        project: &str,
        req: &Rollback,
    ) -> Result<(DeploymentRow, Option<u64>), ApiError> {
        let project = self.project_for(ctx, project, Need::DEPLOY, "roll back").await?;
        let name = name_of(&project)?;
        // The exact deployment decided on is the one served.
        let target = self.store.deployments().rollback_target(&name, req.to.as_deref()).await?;
        let decision = Decision {
            action: "rollback",
            project: Some(&project),
            environment: Some("production"),
            deployment: Some(deployment_input(&target)),
            request: serde_json::json!({ "to": req.to }),
        };
        self.decide_for(ctx, decision).await?;
        let next = self.schedules_of(target.manifest_digest.as_deref()).await?;
        self.decide_crons(ctx, &project, deployment_input(&target), next).await?;
        let audit = ctx.audit_on(&project, "rollback", serde_json::json!({ "to": req.to }));
        Ok(self.store.deployments().rollback(&name, Some(target.id.as_str()), &audit, now_ms()).await?)
    }

    pub(crate) async fn split(&self, ctx: &Ctx, project: &str) -> Result<Split, ApiError> {
        let project = self.project_for(ctx, project, Need::READ, "read splits").await?;
        let weights = self.store.deployments().split(&name_of(&project)?).await?.into_iter().collect();
        Ok(Split { project: project.name, weights, propagation: None })
    }

    /// Validates and stores a split: every key a ready deployment of the
    /// project (or `production`), weights whole percents adding up to 100.
    pub(crate) async fn set_split(&self, ctx: &Ctx, project: &str, body: &[u8]) -> Result<(Split, u64), ApiError> {
        let project = self.project_for(ctx, project, Need::DEPLOY, "split traffic").await?;
        let name = name_of(&project)?;
        let req: SetSplit = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("request body is not a valid split: {e}")))?;
        if req.weights.is_empty() {
            return Err(ApiError::BadRequest(
                "a split needs at least one deployment; DELETE the split to end it".into(),
            ));
        }
        // Summed wide: weights near u32::MAX must not wrap round to 100.
        let total: u64 = req.weights.values().map(|w| u64::from(*w)).sum();
        if req.weights.values().any(|w| *w > 100) || total != 100 {
            return Err(ApiError::BadRequest(format!(
                "split weights are percents and must add up to 100 (they add up to {total})"
            )));
        }
        let mut weights: Vec<(String, u32)> = Vec::new();
        for (key, weight) in &req.weights {
            let id = if key == "production" {
                self.store
                    .deployments()
                    .ready_deployments(&name)
                    .await?
                    .and_then(|rows| rows.into_iter().find(|r| r.is_production))
                    .map(|r| r.id.to_string())
                    .ok_or_else(|| ApiError::Conflict(format!("project {name} has no production deployment")))?
            } else {
                key.to_ascii_lowercase()
            };
            if weights.iter().any(|(other, _)| *other == id) {
                return Err(ApiError::BadRequest(format!("deployment {id} is named twice")));
            }
            weights.push((id, *weight));
        }
        let request = serde_json::json!({ "weights": weights });
        let decision = Decision { action: "split.change", project: Some(&project), request, ..Decision::default() };
        self.decide_for(ctx, decision).await?;
        let audit = ctx.audit_on(&project, "split.change", serde_json::json!({ "weights": weights }));
        let seq = self.store.deployments().set_split(&name, &weights, &audit, now_ms()).await?;
        Ok((Split { project: project.name, weights: weights.into_iter().collect(), propagation: None }, seq))
    }

    pub(crate) async fn clear_split(&self, ctx: &Ctx, project: &str) -> Result<(Split, u64), ApiError> {
        let project = self.project_for(ctx, project, Need::DEPLOY, "split traffic").await?;
        let request = serde_json::json!({ "weights": [] });
        let decision = Decision { action: "split.change", project: Some(&project), request, ..Decision::default() };
        self.decide_for(ctx, decision).await?;
        let audit = ctx.audit_on(&project, "split.change", serde_json::json!({ "weights": [] }));
        let seq = self.store.deployments().set_split(&name_of(&project)?, &[], &audit, now_ms()).await?;
        Ok((Split { project: project.name, weights: Default::default(), propagation: None }, seq))
    }
}

pub(crate) fn name_of(project: &ProjectRef) -> Result<ProjectName, ApiError> {
    ProjectName::parse(&project.name).map_err(|e| ApiError::Internal(format!("stored project name: {e}")))
}
