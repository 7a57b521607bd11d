package library.scopes_data_test

import data.library.scopes_data

req(route, method, scope) := {
	"method": method,
	"path": concat("", ["/", route]),
	"segments": [route],
	"query": {},
	"headers": {},
	"client": {"ip": "192.0.2.10"},
	"tls": {"client_certificate": null},
	"principal": {"type": "jwt", "issuer": "https://idp.example", "subject": "svc", "claims": {"scope": scope}},
	"route": {"id": route, "metadata": {}},
	"time_ns": 1700000000000000000,
}

decide(route, method, scope) := d if {
	d := scopes_data.decision with input as req(route, method, scope)
}

test_read_scope_reads if decide("orders", "GET", "orders:read").allow

test_missing_scope_is_named if {
	d := decide("orders", "POST", "orders:read")
	not d.allow
	d.message == "missing scope(s): orders:write"
}

test_all_scopes_needed if {
	not decide("orders", "DELETE", "orders:write").allow
	decide("orders", "DELETE", "orders:admin orders:write").allow
}

test_unconfigured_method_denied if {
	d := decide("orders", "PATCH", "orders:write orders:admin")
	not d.allow
	d.reasons == ["scopes.not_configured"]
}

test_unconfigured_route_denied if not decide("billing", "GET", "billing:read").allow

test_rules_follow_the_data if {
	decide("orders", "PATCH", "orders:write").allow with data.library.scopes_data.required_scopes.orders.PATCH as ["orders:write"]
	not decide("orders", "GET", "orders:read").allow with data.library.scopes_data.required_scopes.orders.GET as ["orders:read", "orders:audit"]
}
