#!/usr/bin/env bash
# Makes everything secret that docker-compose.yml mounts, into docker/certs/ (git-ignored, never in
# the image: .dockerignore keeps it out of the build context). Demo only: a fresh CA per checkout.
# Each service mounts only its own folder, so no container holds a key it does not use:
#   ca.crt, ca.key              the demo CA; its key is never mounted anywhere
#   issuer-signing-key.json     the demo issuer's ES256 key (JWK), for `npx portcullis demo token --dir
#   issuer.json                 docker/certs` on the host; never mounted
#   gateway/                    the gateway (/etc/portcullis/tls): ca.crt; gateway.crt/.key, its public
#                               listener (localhost, 127.0.0.1, gateway); gateway-client.crt/.key, its
#                               client certificate for mTLS to functions, URI SAN
#                               spiffe://portcullis.demo/gateway (the only caller the function admits);
#                               jwks.json, the issuer's public keys; bundle-signing.pem, the key that
#                               policy bundles must be signed with
#   function/                   the demo function: ca.crt, function.crt/.key (function, localhost)
#   bundles/                    the nginx bundle server: ca.crt (for its health check), bundles.crt/.key (bundles)
#   signing/                    the bundle step: bundle-signing.key (RSA), which signs .signatures.json
# Usage: docker/make-certs.sh [dir]   (default docker/certs; a file is kept while its CA is, and a
# certificate until it is within 30 days of expiry; delete the folder to start afresh)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-$here/certs}"
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
umask 077
issuer="https://issuer.portcullis.demo"
spiffe="spiffe://portcullis.demo/gateway"
mkdir -p gateway function bundles signing

new_ca=0
if [[ ! -s ca.key ]]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
  openssl req -x509 -new -key ca.key -sha256 -days 825 -subj "/CN=Portcullis Compose Demo CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt
  new_ca=1
fi
for service in gateway function bundles; do cp ca.crt "$service/ca.crt"; done

# leaf <path without extension> <CN> <extendedKeyUsage> <subjectAltName>: made again under a new CA
# or when it expires within 30 days.
leaf() {
  if [[ $new_ca == 0 && -s "$1.crt" && -s "$1.key" ]] && openssl x509 -checkend 2592000 -noout -in "$1.crt" >/dev/null; then return; fi
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 365 -out "$1.crt" \
    -extfile <(printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' "$3" "$4") 2>/dev/null
  rm -f "$1.csr"
}
leaf gateway/gateway portcullis-gateway serverAuth "DNS:localhost,DNS:gateway,IP:127.0.0.1"
leaf gateway/gateway-client portcullis-gateway clientAuth "URI:$spiffe"
leaf function/function demo-function serverAuth "DNS:function,DNS:localhost"
leaf bundles/bundles bundle-server serverAuth "DNS:bundles,DNS:localhost"
rm -f ca.srl

if [[ ! -s signing/bundle-signing.key ]]; then
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out signing/bundle-signing.key 2>/dev/null
fi
openssl pkey -in signing/bundle-signing.key -pubout -out gateway/bundle-signing.pem

# The issuer's key (JWK, by Node's own crypto: the project already needs Node; the kid is random),
# made once; its public half is written for the gateway on every run.
node --input-type=module -e '
  import { createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID } from "node:crypto"
  import { existsSync, readFileSync, writeFileSync } from "node:fs"
  if (!existsSync("issuer-signing-key.json")) {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" })
    const jwk = { ...privateKey.export({ format: "jwk" }), kid: randomUUID(), alg: "ES256", use: "sig" }
    writeFileSync("issuer-signing-key.json", JSON.stringify(jwk, null, 2) + "\n", { mode: 0o600 })
  }
  const { kid, alg, use, ...jwk } = JSON.parse(readFileSync("issuer-signing-key.json", "utf8"))
  const pub = createPublicKey(createPrivateKey({ key: jwk, format: "jwk" })).export({ format: "jwk" })
  writeFileSync("gateway/jwks.json", JSON.stringify({ keys: [{ ...pub, kid, alg, use }] }, null, 2) + "\n")
'
printf '{ "issuer": "%s" }\n' "$issuer" > issuer.json

# Who reads what through the bind mounts: the gateway and the function run as uid/gid 1000, so their
# folders belong to group 1000 and their keys are readable by owner and group only; nginx's master and
# the bundle step read their keys as root, so those stay private to the owner. Nothing is readable by
# every local user, except on a host where this user cannot give files to group 1000: then the two
# uid-1000 folders fall back to world-readable, and the script says so.
chmod 755 .
chmod 644 ca.crt issuer.json
chmod 600 ca.key issuer-signing-key.json
chmod 700 bundles signing
chmod 600 bundles/bundles.key signing/bundle-signing.key
chmod 644 bundles/*.crt
shopt -s nullglob
for service in gateway function; do
  chmod 644 "$service"/*.crt "$service"/*.pem "$service"/*.json
  if chgrp -R 1000 "$service" 2>/dev/null; then
    chmod 750 "$service"
    chmod 640 "$service"/*.key
  else
    chmod 755 "$service"
    chmod 644 "$service"/*.key
    echo "make-certs: cannot give $dir/$service to group 1000 (uid 1000 runs in the container): its keys are readable by every local user" >&2
  fi
done
echo "made $(pwd)" >&2
