# METADATA
# title: Network and time conditions
# description: |
#   A route whose metadata names a network (`network: internal`) only admits
#   clients whose address is in that network's CIDR list; routes in a
#   maintenance window are closed for its duration. Both lists live in
#   data.json, so operations change them without touching Rego. Windows are
#   Unix seconds (`start`, `end`; `until` is the text shown to clients):
#   the WASM runtime has no RFC 3339 parser, and the capabilities file makes
#   `opa build` refuse a policy that calls one.
#   The clock is time.now_ns(), which the gateway provides to WASM policies.
#   The client address is the TCP peer (or what a configured trusted proxy
#   vouches for), never a header the client wrote.
#   config/library/network-time.yaml uses it.
# scope: package
package library.network_time

# METADATA
# title: Decision
# entrypoint: true
# custom:
#   id: nettime.decision
default decision := {
	"allow": false,
	"reasons": ["nettime.default_deny"],
	"status": 403,
	"message": "not allowed",
}

decision := {"allow": true, "reasons": ["nettime.allowed"]} if {
	input.principal.type in {"jwt", "mtls"}
	count(refusals) == 0
}

decision := {
	"allow": false,
	"reasons": sort([r.id | some r in refusals]),
	"status": 403,
	"message": concat("; ", sort([r.message | some r in refusals])),
} if count(refusals) > 0

now := time.now_ns()

required_network := input.route.metadata.network

# METADATA
# title: The client address is outside the route's network
# custom:
#   id: nettime.network
refusals contains {"id": rego.metadata.rule().custom.id, "message": "your network may not use this route"} if {
	required_network
	not in_network(required_network)
}

in_network(name) if {
	some cidr in data.library.network_time.networks[name]
	net.cidr_contains(cidr, input.client.ip)
}

# METADATA
# title: The route is in a maintenance window
# custom:
#   id: nettime.maintenance
refusals contains {"id": rego.metadata.rule().custom.id, "message": sprintf("closed for maintenance until %s", [w.until])} if {
	some w in data.library.network_time.maintenance
	input.route.id in w.routes
	w.start * 1000000000 <= now
	now < w.end * 1000000000
}
