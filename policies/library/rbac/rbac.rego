# METADATA
# title: Role-based access from token claims
# description: |
#   Roles (the `roles` claim) and OAuth scopes (the space-separated `scope`
#   claim, RFC 9068) grant methods on routes. Anything not granted is denied.
#   Use with a config whose routes have the ids used in `permissions`
#   (config/library/rbac.yaml).
# scope: package
package library.rbac

# METADATA
# title: Decision
# entrypoint: true
# custom:
#   id: rbac.decision
default decision := {"allow": false, "reasons": ["rbac.default_deny"], "status": 403, "message": "no role or scope grants this"}

decision := {"allow": true, "reasons": sort(grants)} if count(grants) > 0

# What each role may do: route id -> methods. Roles not listed grant nothing.
role_permissions := {
	"reader": {"orders": {"GET", "HEAD"}},
	"writer": {"orders": {"GET", "HEAD", "POST", "PUT", "PATCH"}},
	"admin": {"orders": {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}, "admin": {"GET", "POST", "DELETE"}},
}

# What each scope may do, for machine clients that carry scopes, not roles.
scope_permissions := {
	"orders:read": {"orders": {"GET", "HEAD"}},
	"orders:write": {"orders": {"POST", "PUT", "PATCH"}},
}

# Only a token the gateway verified carries claims; an mTLS or anonymous
# principal has none, so it is granted nothing here.
claims := input.principal.claims if input.principal.type == "jwt"

roles contains role if {
	some role in claims.roles
	is_string(role)
}

scopes contains scope if {
	is_string(claims.scope)
	some scope in split(claims.scope, " ")
	scope != ""
}

# METADATA
# title: A role in the token grants the method on the route
# custom:
#   id: rbac.role
grants contains rego.metadata.rule().custom.id if {
	some role in roles
	input.method in role_permissions[role][input.route.id]
}

# METADATA
# title: A scope in the token grants the method on the route
# custom:
#   id: rbac.scope
grants contains rego.metadata.rule().custom.id if {
	some scope in scopes
	input.method in scope_permissions[scope][input.route.id]
}
