package library.tenant_isolation_test

import data.library.tenant_isolation as tenant

cert := {
	"subject": "CN=laptop-7",
	"issuer": "CN=Devices CA",
	"serial_number": "01",
	"not_after": "2030-01-01T00:00:00Z",
	"sans": {"dns": [], "uri": [], "email": [], "ip": []},
	"spiffe_id": null,
	"thumbprint_sha256": "abc",
}

req(path, claims, client_cert) := {
	"method": "GET",
	"path": path,
	"segments": array.slice(split(path, "/"), 1, 100),
	"query": {},
	"headers": {},
	"client": {"ip": "192.0.2.10"},
	"tls": {"client_certificate": client_cert},
	"principal": {"type": "jwt", "issuer": "https://idp.example", "subject": "alice", "claims": claims},
	"route": {"id": "tenants", "metadata": {}},
	"time_ns": 1700000000000000000,
}

decide(path, claims, client_cert) := d if {
	d := tenant.decision with input as req(path, claims, client_cert)
}

test_own_tenant_allowed_and_injected if {
	d := decide("/tenants/acme/orders", {"tenant": "acme"}, null)
	d.allow
	d.reasons == ["tenant.own"]
	d.headers.upstream["x-tenant"] == "acme"
}

test_other_tenant_denied if not decide("/tenants/globex/orders", {"tenant": "acme"}, null).allow

test_tenant_is_compared_exactly if {
	not decide("/tenants/ACME/orders", {"tenant": "acme"}, null).allow
	not decide("/tenants/acme2/x", {"tenant": "acme"}, null).allow
}

test_no_tenant_claim_denied if not decide("/tenants/acme/x", {}, null).allow

test_non_string_tenant_claim_denied if not decide("/tenants/acme/x", {"tenant": ["acme"]}, null).allow

test_other_path_shapes_denied if {
	not decide("/acme/orders", {"tenant": "acme"}, null).allow
	not decide("/tenants/", {"tenant": ""}, null).allow
}

admin := {"roles": ["platform-admin"], "amr": ["pwd", "mfa"], "tenant": "ops"}

test_admin_override_with_everything if {
	d := decide("/tenants/globex/orders", admin, cert)
	d.allow
	d.reasons == ["tenant.admin_override"]
	d.headers.upstream["x-tenant"] == "globex"
}

test_admin_in_own_tenant_meets_both_rules if {
	d := decide("/tenants/globex/orders", object.union(admin, {"tenant": "globex"}), cert)
	d.allow
	d.reasons == ["tenant.admin_override", "tenant.own"]
}

test_admin_without_certificate_denied if not decide("/tenants/globex/orders", admin, null).allow

test_admin_without_mfa_denied if not decide("/tenants/globex/orders", object.union(admin, {"amr": ["pwd"]}), cert).allow

test_admin_role_alone_denied if not decide("/tenants/globex/orders", {"roles": ["platform-admin"]}, cert).allow

test_mtls_principal_is_not_a_tenant if {
	r := object.union(req("/tenants/acme/x", {}, cert), {"principal": {"type": "mtls", "issuer": "CN=ca", "subject": "CN=x", "claims": {"tenant": "acme"}}})
	not tenant.decision.allow with input as r
}
