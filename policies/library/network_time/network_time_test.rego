package library.network_time_test

import data.library.network_time

req(route, metadata, ip) := {
	"method": "GET",
	"path": concat("", ["/", route]),
	"segments": [route],
	"query": {},
	"headers": {},
	"client": {"ip": ip},
	"tls": {"client_certificate": null},
	"principal": {"type": "jwt", "issuer": "https://idp.example", "subject": "alice", "claims": {}},
	"route": {"id": route, "metadata": metadata},
	"time_ns": 0,
}

# 2026-12-05T21:59:59Z, 23:30:00Z and 2026-12-06T02:00:00Z (the window in data.json)
before_window := 1796507999000000000

in_window := 1796513400000000000

window_end := 1796522400000000000

decide(r, at) := d if {
	d := network_time.decision with input as r with time.now_ns as at
}

test_internal_route_from_inside if {
	decide(req("metrics", {"network": "internal"}, "10.1.2.3"), before_window).allow
	decide(req("metrics", {"network": "internal"}, "::1"), before_window).allow
}

test_internal_route_from_outside if {
	d := decide(req("metrics", {"network": "internal"}, "203.0.113.9"), before_window)
	not d.allow
	d.reasons == ["nettime.network"]
}

test_cidr_edges if {
	decide(req("metrics", {"network": "internal"}, "192.168.255.255"), before_window).allow
	not decide(req("metrics", {"network": "internal"}, "192.169.0.0"), before_window).allow
}

test_unknown_network_name_denies if not decide(req("metrics", {"network": "partners"}, "10.1.2.3"), before_window).allow

test_route_without_network_is_open_to_any_address if decide(req("orders", {}, "203.0.113.9"), before_window).allow

test_maintenance_window_closes_the_route if {
	d := decide(req("orders", {}, "10.0.0.1"), in_window)
	not d.allow
	d.reasons == ["nettime.maintenance"]
	d.message == "closed for maintenance until 2026-12-06T02:00:00Z"
}

test_window_end_is_exclusive if decide(req("orders", {}, "10.0.0.1"), window_end).allow

test_window_only_for_listed_routes if decide(req("hello", {}, "10.0.0.1"), in_window).allow

test_both_refusals_reported if {
	d := decide(req("orders", {"network": "internal"}, "203.0.113.9"), in_window)
	d.reasons == ["nettime.maintenance", "nettime.network"]
}

test_anonymous_denied if {
	r := object.union(req("hello", {}, "10.0.0.1"), {"principal": null})
	not decide(r, before_window).allow
}
