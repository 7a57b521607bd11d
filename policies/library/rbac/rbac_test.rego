package library.rbac_test

import data.library.rbac

req(route, method, claims) := {
	"method": method,
	"path": concat("", ["/", route]),
	"segments": [route],
	"query": {},
	"headers": {},
	"client": {"ip": "192.0.2.10"},
	"tls": {"client_certificate": null},
	"principal": {"type": "jwt", "issuer": "https://idp.example", "subject": "alice", "claims": claims},
	"route": {"id": route, "metadata": {}},
	"time_ns": 1700000000000000000,
}

allow(route, method, claims) if rbac.decision.allow with input as req(route, method, claims)

test_reader_reads_orders if allow("orders", "GET", {"roles": ["reader"]})

test_reader_cannot_write if not allow("orders", "POST", {"roles": ["reader"]})

test_writer_cannot_delete if not allow("orders", "DELETE", {"roles": ["writer"]})

test_admin_deletes if allow("orders", "DELETE", {"roles": ["admin"]})

test_admin_route_needs_admin if {
	allow("admin", "GET", {"roles": ["admin"]})
	not allow("admin", "GET", {"roles": ["writer"]})
}

test_scope_grants if {
	allow("orders", "GET", {"scope": "profile orders:read"})
	not allow("orders", "POST", {"scope": "orders:read"})
	allow("orders", "POST", {"scope": "orders:read orders:write"})
}

test_scope_is_not_a_substring_match if not allow("orders", "GET", {"scope": "orders:reader"})

test_unknown_route_denied if not allow("billing", "GET", {"roles": ["admin"]})

test_no_claims_denied if not allow("orders", "GET", {})

test_non_string_roles_ignored if not allow("orders", "GET", {"roles": [{"reader": true}, 1]})

test_mtls_principal_gets_nothing if {
	r := object.union(req("orders", "GET", {}), {"principal": {"type": "mtls", "issuer": "CN=ca", "subject": "spiffe://x/y", "claims": {"roles": ["admin"]}}})
	not rbac.decision.allow with input as r
}

test_deny_explains if {
	d := rbac.decision with input as req("orders", "POST", {"roles": ["reader"]})
	d == {"allow": false, "reasons": ["rbac.default_deny"], "status": 403, "message": "no role or scope grants this"}
}

test_reasons_name_the_grants if {
	d := rbac.decision with input as req("orders", "GET", {"roles": ["reader"], "scope": "orders:read"})
	d.reasons == ["rbac.role", "rbac.scope"]
}
