package gateway.authz_test

import data.gateway.authz

principal(roles) := {
	"type": "jwt",
	"issuer": "https://issuer.example",
	"subject": "alice",
	"claims": {"roles": roles},
}

# A complete input as the gateway builds it, so the tests exercise the same
# shape that input.schema.json describes.
request(route, method, who) := {
	"method": method,
	"path": concat("", ["/", route]),
	"segments": [route],
	"query": {},
	"headers": {"accept": "application/json"},
	"client": {"ip": "192.0.2.10"},
	"tls": {"client_certificate": null},
	"principal": who,
	"route": {"id": route, "metadata": {}},
	"time_ns": 1700000000000000000,
}

decide(route, method, who) := d if {
	d := authz.decision with input as request(route, method, who)
}

allowed(reason) := {
	"allow": true,
	"reasons": [reason],
	"headers": {"upstream": {"x-portcullis-roles": ""}},
}

# Every route × method × role combination of the demo, with the reason the
# decision must give. Headers are checked separately below.
matrix := {
	"hello GET no roles": ["hello", "GET", [], true, "authz.hello.authenticated"],
	"hello POST no roles": ["hello", "POST", [], true, "authz.hello.authenticated"],
	"hello GET reader": ["hello", "GET", ["reader"], true, "authz.hello.authenticated"],
	"hello DELETE admin": ["hello", "DELETE", ["admin"], true, "authz.hello.authenticated"],
	"orders GET no roles": ["orders", "GET", [], false, "authz.orders.read.forbidden"],
	"orders GET unrelated role": ["orders", "GET", ["unlisted-role"], false, "authz.orders.read.forbidden"],
	"orders GET reader": ["orders", "GET", ["reader"], true, "authz.orders.read"],
	"orders HEAD reader": ["orders", "HEAD", ["reader"], true, "authz.orders.read"],
	"orders GET writer": ["orders", "GET", ["writer"], true, "authz.orders.read"],
	"orders GET admin": ["orders", "GET", ["admin"], true, "authz.orders.read"],
	"orders POST no roles": ["orders", "POST", [], false, "authz.orders.write.forbidden"],
	"orders POST reader": ["orders", "POST", ["reader"], false, "authz.orders.write.forbidden"],
	"orders PUT reader": ["orders", "PUT", ["reader"], false, "authz.orders.write.forbidden"],
	"orders DELETE reader": ["orders", "DELETE", ["reader"], false, "authz.orders.write.forbidden"],
	"orders OPTIONS reader": ["orders", "OPTIONS", ["reader"], false, "authz.orders.write.forbidden"],
	"orders POST writer": ["orders", "POST", ["writer"], true, "authz.orders.write"],
	"orders PATCH writer": ["orders", "PATCH", ["writer"], true, "authz.orders.write"],
	"orders DELETE admin": ["orders", "DELETE", ["admin"], true, "authz.orders.write"],
	"orders POST reader+writer": ["orders", "POST", ["reader", "writer"], true, "authz.orders.write"],
	"admin GET no roles": ["admin", "GET", [], false, "authz.admin.forbidden"],
	"admin GET reader": ["admin", "GET", ["reader"], false, "authz.admin.forbidden"],
	"admin POST writer": ["admin", "POST", ["writer"], false, "authz.admin.forbidden"],
	"admin GET admin": ["admin", "GET", ["admin"], true, "authz.admin.admin"],
	"admin DELETE admin": ["admin", "DELETE", ["admin"], true, "authz.admin.admin"],
	"admin GET Admin (roles are case-sensitive)": ["admin", "GET", ["Admin"], false, "authz.admin.forbidden"],
	"unknown GET admin": ["billing", "GET", ["admin"], false, "authz.route.unknown"],
}

test_matrix[name] if {
	some name, [route, method, roles, allow, reason] in matrix
	d := decide(route, method, principal(roles))
	d.allow == allow
	d.reasons == [reason]
}

test_allow_forwards_vouched_roles if {
	# Only roles this policy knows are vouched for; "unlisted-role" is not one.
	d := decide("orders", "GET", principal(["writer", "unlisted-role", "reader"]))
	d.headers == {"upstream": {"x-portcullis-roles": "reader,writer"}}
	not d.status
	not d.message
}

test_forwarded_roles_are_sorted_whatever_the_claim_shape[name] if {
	some name, roles in {
		"array": ["writer", "admin", "reader"],
		"array with repeats": ["writer", "admin", "writer", "reader", "admin"],
		"object": {"z": "writer", "a": "admin", "m": "reader"},
	}
	d := decide("orders", "GET", principal(roles))
	d.headers.upstream["x-portcullis-roles"] == "admin,reader,writer"
}

test_allow_without_roles_forwards_empty_roles if {
	decide("hello", "GET", principal([])) == allowed("authz.hello.authenticated")
}

test_denial_has_status_and_message if {
	decide("orders", "POST", principal(["reader"])) == {
		"allow": false,
		"reasons": ["authz.orders.write.forbidden"],
		"status": 403,
		"message": "changing orders requires role writer or admin",
	}
}

test_denial_never_forwards_headers if {
	d := decide("admin", "GET", principal(["writer"]))
	not d.headers
}

test_missing_principal_is_unauthenticated[route] if {
	some route in ["hello", "orders", "admin"]
	decide(route, "GET", null) == {
		"allow": false,
		"reasons": ["authz.unauthenticated"],
		"status": 401,
		"message": "authentication required",
	}
}

test_absent_principal_key_is_unauthenticated if {
	d := authz.decision with input as object.remove(request("hello", "GET", null), ["principal"])
	d.reasons == ["authz.unauthenticated"]
	d.status == 401
}

test_empty_subject_is_unauthenticated if {
	who := object.union(principal(["admin"]), {"subject": ""})
	decide("admin", "GET", who).reasons == ["authz.unauthenticated"]
}

test_missing_roles_claim if {
	who := object.union(principal([]), {"claims": {"scope": "orders"}})
	decide("hello", "GET", who) == allowed("authz.hello.authenticated")
	decide("orders", "GET", who).reasons == ["authz.orders.read.forbidden"]
	decide("admin", "GET", who).reasons == ["authz.admin.forbidden"]
}

test_roles_claim_that_is_not_an_array[name] if {
	some name, roles in {"string": "admin", "object": {"admin": true}, "null": null, "number": 1}
	decide("admin", "GET", principal(roles)).reasons == ["authz.admin.forbidden"]
}

test_unusable_roles_are_ignored if {
	# A comma or a line break would let an issuer smuggle extra roles or
	# headers into the value forwarded upstream.
	who := principal([1, null, "admin,root", "admin\r\nx-evil: 1", "", "Admin", "reader"])
	d := decide("orders", "GET", who)
	d.allow
	d.headers.upstream["x-portcullis-roles"] == "reader"
	decide("admin", "GET", who).reasons == ["authz.admin.forbidden"]
}

test_unknown_route_denied_even_without_principal if {
	decide("billing", "GET", null) == {
		"allow": false,
		"reasons": ["authz.route.unknown"],
		"status": 403,
		"message": "route is not covered by the authorization policy",
	}
}

test_missing_route_denied if {
	d := authz.decision with input as object.remove(request("hello", "GET", principal(["admin"])), ["route"])
	d.allow == false
	d.reasons == ["authz.route.unknown"]
}

test_empty_input_denied if {
	d := authz.decision with input as {}
	d.allow == false
	d.reasons == ["authz.route.unknown"]
}

test_every_decision_explains_itself[name] if {
	some name, [route, method, roles, _, _] in matrix
	d := decide(route, method, principal(roles))
	count(d.reasons) > 0
	every r in d.reasons {
		startswith(r, "authz.")
	}
}

test_allow_is_false_by_default if {
	not authz.allow with input as {}
	authz.allow == false with input as {}
}

test_missing_method_needs_write_role if {
	d := authz.decision with input as object.remove(request("orders", "GET", principal(["reader"])), ["method"])
	d.reasons == ["authz.orders.write.forbidden"]
	decide("orders", "get", principal(["reader"])).reasons == ["authz.orders.write.forbidden"]
}

test_fallback_decision_denies if {
	# Unreachable with the rules above; it guards against a future rule
	# gap turning into an undefined (and thus malformed) decision.
	d := authz.decision with input as {} with authz.denials as set()
	d == {"allow": false, "reasons": ["authz.default_deny"], "status": 403, "message": "forbidden"}
}

test_anonymous_principal_is_not_authenticated if {
	who := {"type": "anonymous", "issuer": "", "subject": "", "claims": {}}
	decide("hello", "GET", who).reasons == ["authz.unauthenticated"]
}

test_anonymous_principal_with_a_subject_is_still_not_authenticated if {
	who := {"type": "anonymous", "issuer": "", "subject": "mallory", "claims": {"roles": ["admin"]}}
	not decide("admin", "GET", who).allow
}

test_certificate_principal_is_authenticated if {
	who := {"type": "mtls", "issuer": "CN=Example CA", "subject": "spiffe://example.org/svc", "claims": {}}
	decide("hello", "GET", who) == allowed("authz.hello.authenticated")
}
