# METADATA
# title: Device-bound admin
# description: |
#   Admin routes need both a verified token with the `admin` role and a client
#   certificate, verified by the gateway on the same connection, whose SPIFFE ID
#   is a registered device of that same person (data.json: devices, keyed by
#   SPIFFE ID). A stolen token without the device, or a device used by someone
#   else, gets nothing. Other routes only need a verified token.
#   The admin route should use `authentication: jwt-and-mtls`
#   (config/library/device-admin.yaml), so the certificate is required at the
#   edge as well.
# scope: package
package library.device_admin

# METADATA
# title: Decision
# entrypoint: true
# custom:
#   id: device.decision
default decision := {
	"allow": false,
	"reasons": ["device.default_deny"],
	"status": 403,
	"message": "admin needs the admin role on a registered device of yours",
}

decision := {"allow": true, "reasons": [reason]} if some reason in allowed_by

admin_route if input.route.metadata.admin == true

token_verified if input.principal.type == "jwt"

# The registered device presenting this connection's certificate, if any.
device := data.library.device_admin.devices[input.tls.client_certificate.spiffe_id]

# METADATA
# title: Admin on a registered device of the same person
# custom:
#   id: device.admin
allowed_by contains rego.metadata.rule().custom.id if {
	admin_route
	token_verified
	"admin" in input.principal.claims.roles
	device.owner == input.principal.subject
}

# METADATA
# title: Non-admin routes need a verified token
# custom:
#   id: device.user
allowed_by contains rego.metadata.rule().custom.id if {
	not admin_route
	token_verified
}
