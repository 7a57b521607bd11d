# METADATA
# title: Tenant isolation
# description: |
#   Paths look like /tenants/{tenant}/...; the tenant in the path must equal the
#   `tenant` claim of the verified token. A platform administrator may act for
#   any tenant, but only with a stronger proof: the `platform-admin` role, a
#   multi-factor login (`amr` contains "mfa", RFC 8176) and a client
#   certificate the gateway verified on the same connection.
#   config/library/tenant-isolation.yaml uses it.
# scope: package
package library.tenant_isolation

# METADATA
# title: Decision
# entrypoint: true
# custom:
#   id: tenant.decision
default decision := {
	"allow": false,
	"reasons": ["tenant.mismatch"],
	"status": 403,
	"message": "this token is not for that tenant",
}

# Every rule that allows, in one sorted list: a platform admin acting in their own tenant meets
# both rules, which must not be two conflicting decisions.
decision := {"allow": true, "reasons": sort(allowed_by), "headers": {"upstream": {"x-tenant": path_tenant}}} if {
	count(allowed_by) > 0
}

claims := input.principal.claims if input.principal.type == "jwt"

# The tenant named by the path; undefined (so denied) for any other shape.
path_tenant := input.segments[1] if {
	input.segments[0] == "tenants"
	input.segments[1] != ""
}

# METADATA
# title: The token's tenant is the path's tenant
# custom:
#   id: tenant.own
allowed_by contains rego.metadata.rule().custom.id if {
	is_string(claims.tenant)
	claims.tenant == path_tenant
}

# METADATA
# title: A platform admin with MFA and a verified client certificate
# custom:
#   id: tenant.admin_override
allowed_by contains rego.metadata.rule().custom.id if {
	path_tenant
	"platform-admin" in claims.roles
	"mfa" in claims.amr
	is_object(input.tls.client_certificate)
}
