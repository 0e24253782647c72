# Production only from the main branch: a deploy, promote or rollback that
# would serve production must be of a deployment built from `main` (a
# laptop's `helix deploy --prod` names no branch, so it is refused too).
package helix

production_actions := {"deploy", "promote", "rollback"}

deny contains msg if {
	production_actions[input.action]
	input.environment == "production"
	input.deployment.branch != "main"
	msg := sprintf("production is served from main only (this deployment's branch: %v)", [input.deployment.branch])
}
