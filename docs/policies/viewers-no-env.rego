# Viewers may read logs (and deployments, builds) but not environment
# variables.
package helix

deny contains msg if {
	input.action == "env.read"
	input.actor.role == "viewer"
	msg := "viewers may read logs but not environment variables"
}
