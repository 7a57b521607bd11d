# METADATA
# title: Portcullis demo authorization
# description: |
#   Decides every request the gateway routes. Anything not allowed by a rule
#   below is denied. The reasons in a decision are the custom.id of
#   the rules that produced it, read from their annotations so the ids in the
#   decision log and the ids in this file cannot drift apart.
# scope: package
package gateway.authz

# METADATA
# title: Decision
# description: |
#   The entrypoint the gateway evaluates. Sets become sorted arrays because
#   WASM serializes sets in no particular order and decision logs should be
#   stable.
# entrypoint: true
# custom:
#   id: authz.decision
default decision := {
	"allow": false,
	"reasons": ["authz.default_deny"],
	"status": 403,
	"message": "forbidden",
}

decision := {
	"allow": true,
	"reasons": sort(grants),
	"headers": {"upstream": {"x-portcullis-roles": concat(",", roles)}},
} if {
	allow
}

decision := {
	"allow": false,
	"reasons": denial_ids,
	"status": primary_denial.status,
	"message": primary_denial.message,
} if {
	not allow
	count(denials) > 0
}

default allow := false

allow if count(grants) > 0

safe_methods := {"GET", "HEAD"}

read_roles := {"reader", "writer", "admin"}

write_roles := {"writer", "admin"}

# A partial set: another file of this package adds its own routes with
# `known_routes contains "<route id>"` (docs/getting-started.md does).
known_routes contains route if some route in {"hello", "orders", "admin"}

route := input.route.id

# Negated tests go through helper rules: `not x in s` with x undefined is
# itself undefined (the operand is evaluated outside the `not`), which would
# silently skip a denial instead of applying it.
known_route if route in known_routes

safe_method if input.method in safe_methods

# Someone the gateway verified: a token or a client certificate. An anonymous
# principal (public routes) is never "authenticated".
authenticated if {
	is_object(input.principal)
	input.principal.type in {"jwt", "mtls"}
	input.principal.subject != ""
}

# The roles this policy knows. Claims are issuer-controlled: only these exact
# strings count, so nothing else (a comma, a line break, a look-alike) can
# reach the comma-joined header forwarded upstream. A set lookup rather than a
# regex: the WASM runtime compiles a regex on every evaluation (~300 us). A
# partial set, so another file of this package can add a role.
known_roles contains role if some role in {"reader", "writer", "admin"}

# Sorted and without repeats, so the forwarded header is the same whatever the
# claim's order or shape (an array, or an object whose values are roles, which
# the WASM runtime and OPA would otherwise iterate in different orders).
roles := sort({r |
	some r in input.principal.claims.roles
	r in known_roles
})

has_role(allowed) if {
	some r in roles
	r in allowed
}

# METADATA
# title: Hello is open to any authenticated principal
# custom:
#   id: authz.hello.authenticated
grants contains rego.metadata.rule().custom.id if {
	route == "hello"
	authenticated
}

# METADATA
# title: Reading orders needs reader, writer or admin
# custom:
#   id: authz.orders.read
grants contains rego.metadata.rule().custom.id if {
	route == "orders"
	authenticated
	safe_method
	has_role(read_roles)
}

# METADATA
# title: Changing orders needs writer or admin
# custom:
#   id: authz.orders.write
grants contains rego.metadata.rule().custom.id if {
	route == "orders"
	authenticated
	not safe_method
	has_role(write_roles)
}

# METADATA
# title: The admin route needs admin
# custom:
#   id: authz.admin.admin
grants contains rego.metadata.rule().custom.id if {
	route == "admin"
	authenticated
	has_role({"admin"})
}

# Denials carry their status and message in their annotation so each rule
# explains itself in one place. At most one applies to a request because
# each is guarded by the failures of the ones before it.

# METADATA
# title: Routes without rules here are denied
# custom:
#   id: authz.route.unknown
#   status: 403
#   message: route is not covered by the authorization policy
denials contains rego.metadata.rule().custom if {
	not known_route
}

# METADATA
# title: Every known route needs a principal
# custom:
#   id: authz.unauthenticated
#   status: 401
#   message: authentication required
denials contains rego.metadata.rule().custom if {
	known_route
	not authenticated
}

# METADATA
# title: Reading orders without a reading role
# custom:
#   id: authz.orders.read.forbidden
#   status: 403
#   message: reading orders requires role reader, writer or admin
denials contains rego.metadata.rule().custom if {
	route == "orders"
	authenticated
	safe_method
	not has_role(read_roles)
}

# METADATA
# title: Changing orders without a writing role
# custom:
#   id: authz.orders.write.forbidden
#   status: 403
#   message: changing orders requires role writer or admin
denials contains rego.metadata.rule().custom if {
	route == "orders"
	authenticated
	not safe_method
	not has_role(write_roles)
}

# METADATA
# title: The admin route without admin
# custom:
#   id: authz.admin.forbidden
#   status: 403
#   message: the admin route requires role admin
denials contains rego.metadata.rule().custom if {
	route == "admin"
	authenticated
	not has_role({"admin"})
}

denial_ids := sort([d.id | some d in denials])

# Lowest id wins should two denials ever apply, so the answer is deterministic
# in WASM too, where set iteration order is unspecified.
primary_denial := d if {
	some d in denials
	d.id == denial_ids[0]
}
