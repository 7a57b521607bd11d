package library.tiers_test

import data.library.tiers

req(route, method, claims) := {
	"method": method,
	"path": concat("", ["/", route]),
	"segments": [route],
	"query": {},
	"headers": {"x-tenant": "globex"},
	"client": {"ip": "192.0.2.10"},
	"tls": {"client_certificate": null},
	"principal": {"type": "jwt", "issuer": "https://idp.example", "subject": "alice", "claims": claims},
	"route": {"id": route, "metadata": {}},
	"time_ns": 1700000000000000000,
}

decide(route, method, claims) := d if {
	d := tiers.decision with input as req(route, method, claims)
}

test_free_tenant if {
	d := decide("orders", "GET", {"tenant": "acme"})
	d.allow
	d.rateLimit == {"tier": "free", "key": "tenant:acme", "cost": 1}
	d.headers.upstream == {"x-tenant": "acme", "x-plan": "free"}
}

test_pro_tenant if {
	d := decide("orders", "GET", {"tenant": "acme", "plan": "pro"})
	d.rateLimit.tier == "pro"
	d.headers.upstream["x-plan"] == "pro"
}

test_unknown_plan_is_free if decide("orders", "GET", {"tenant": "acme", "plan": "enterprise-ish"}).rateLimit.tier == "free"

test_exports_cost_more if {
	decide("reports", "POST", {"tenant": "acme"}).rateLimit.cost == 10
	decide("reports", "GET", {"tenant": "acme"}).rateLimit.cost == 1
}

test_tenant_header_comes_from_the_token_not_the_client if {
	# The request carries x-tenant: globex; the decision names the token's tenant.
	decide("orders", "GET", {"tenant": "acme"}).headers.upstream["x-tenant"] == "acme"
}

test_no_tenant_denied if not decide("orders", "GET", {}).allow

test_odd_tenant_values_denied if {
	not decide("orders", "GET", {"tenant": "Acme"}).allow
	not decide("orders", "GET", {"tenant": "acme\r\nx-admin: 1"}).allow
	not decide("orders", "GET", {"tenant": ""}).allow
	not decide("orders", "GET", {"tenant": 42}).allow
}
