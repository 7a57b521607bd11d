# METADATA
# title: Policy-chosen rate-limit tier and upstream headers
# description: |
#   Tenants on the `pro` plan get the `pro` rate-limit tier, everyone else
#   `free` (the tiers' limits are in the gateway config, rateLimit.tiers). The
#   limit is shared by the whole tenant (the key), and expensive report
#   exports cost 10 requests each. The function learns the tenant and plan
#   from headers the gateway sets from verified claims: a client-sent
#   x-tenant is never forwarded, and the policy cannot be told otherwise.
#   config/library/tiers.yaml uses it.
# scope: package
package library.tiers

# METADATA
# title: Decision
# entrypoint: true
# custom:
#   id: tiers.decision
default decision := {
	"allow": false,
	"reasons": ["tiers.no_tenant"],
	"status": 403,
	"message": "a token with a tenant is required",
}

decision := {
	"allow": true,
	"reasons": ["tiers.tenant"],
	"headers": {"upstream": {"x-tenant": tenant, "x-plan": tier}},
	"rateLimit": {"tier": tier, "key": concat(":", ["tenant", tenant]), "cost": cost},
} if {
	tenant
}

claims := input.principal.claims if input.principal.type == "jwt"

# Only a plain tenant name is accepted: it becomes a header value and a key.
tenant := claims.tenant if regex.match(`^[a-z0-9][a-z0-9-]{0,62}$`, claims.tenant)

default tier := "free"

tier := "pro" if claims.plan == "pro"

default cost := 1

cost := 10 if {
	input.method == "POST"
	input.route.id == "reports"
}
