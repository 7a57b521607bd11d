package library.device_admin_test

import data.library.device_admin

cert(spiffe_id) := {
	"subject": "CN=laptop",
	"issuer": "CN=Devices CA",
	"serial_number": "01",
	"not_after": "2030-01-01T00:00:00Z",
	"sans": {"dns": [], "uri": [spiffe_id], "email": [], "ip": []},
	"spiffe_id": spiffe_id,
	"thumbprint_sha256": "abc",
}

req(admin, subject, roles, client_cert) := {
	"method": "POST",
	"path": "/admin/users",
	"segments": ["admin", "users"],
	"query": {},
	"headers": {},
	"client": {"ip": "192.0.2.10"},
	"tls": {"client_certificate": client_cert},
	"principal": {"type": "jwt", "issuer": "https://idp.example", "subject": subject, "claims": {"roles": roles}},
	"route": {"id": "admin", "metadata": {"admin": admin}},
	"time_ns": 1700000000000000000,
}

laptop7 := cert("spiffe://corp.example/device/laptop-7")

allow(r) if device_admin.decision.allow with input as r

test_admin_on_own_device if allow(req(true, "alice", ["admin"], laptop7))

test_admin_without_certificate if not allow(req(true, "alice", ["admin"], null))

test_admin_on_someone_elses_device if not allow(req(true, "bob", ["admin"], laptop7))

test_admin_on_unregistered_device if not allow(req(true, "alice", ["admin"], cert("spiffe://corp.example/device/unknown")))

test_certificate_without_spiffe_id if {
	c := object.union(laptop7, {"spiffe_id": null})
	not allow(req(true, "alice", ["admin"], c))
}

test_device_without_admin_role if not allow(req(true, "alice", ["reader"], laptop7))

test_certificate_alone_is_not_a_token if {
	r := object.union(req(true, "alice", [], laptop7), {"principal": {"type": "mtls", "issuer": "CN=Devices CA", "subject": "spiffe://corp.example/device/laptop-7", "claims": {}}})
	not allow(r)
}

test_other_routes_need_a_token_only if {
	allow(req(false, "carol", [], null))
	r := object.union(req(false, "carol", [], null), {"principal": null})
	not allow(r)
}

test_devices_come_from_data if {
	not allow(req(true, "alice", ["admin"], laptop7)) with data.library.device_admin.devices as {}
}
