# Previews may not read production secrets: a build or function instance
# of anything but a production deployment never decrypts a production
# secret.
package helix

deny contains msg if {
	input.action == "secret.read"
	input.environment == "production"
	not input.deployment.production
	msg := sprintf("%v may not read production secrets (%v)", [input.actor.name, concat(", ", input.request.names)])
}
