# METADATA
# title: Data-driven required scopes
# description: |
#   Which OAuth scopes each route and method needs lives in data.json
#   (required_scopes: route id -> method -> scopes, all of which must be in
#   the token's `scope` claim). Publishing a new data.json in the bundle
#   changes the rules without changing Rego. A route or method missing from
#   the data is denied.
#   config/library/scopes-data.yaml uses it.
# scope: package
package library.scopes_data

# METADATA
# title: Decision
# entrypoint: true
# custom:
#   id: scopes.decision
default decision := {
	"allow": false,
	"reasons": ["scopes.not_configured"],
	"status": 403,
	"message": "no scopes are configured for this route and method",
}

decision := {"allow": true, "reasons": ["scopes.satisfied"]} if {
	count(required) > 0
	count(missing) == 0
}

decision := {
	"allow": false,
	"reasons": ["scopes.missing"],
	"status": 403,
	"message": concat(" ", ["missing scope(s):", concat(" ", sort(missing))]),
} if count(missing) > 0

required := {s | some s in data.library.scopes_data.required_scopes[input.route.id][input.method]}

granted contains s if {
	input.principal.type == "jwt"
	is_string(input.principal.claims.scope)
	some s in split(input.principal.claims.scope, " ")
}

missing := required - granted
