#!/usr/bin/env bash
# Makes everything secret that docker-compose.yml mounts, into docker/certs/ (git-ignored, never in
# the image: .dockerignore keeps it out of the build context). Demo only: a fresh CA per checkout.
#   ca.crt                      the demo CA (clients trust it for the gateway; the gateway and the
#                               function trust it for each other)
#   gateway.crt/.key            the gateway's public listener (localhost, 127.0.0.1, gateway)
#   gateway-client.crt/.key     the gateway's client certificate for mTLS to functions,
#                               URI SAN spiffe://portcullis.demo/gateway (the only caller the function admits)
#   function.crt/.key           the demo function (function, localhost)
#   bundles.crt/.key            the nginx bundle server (bundles)
#   bundle-signing.key/.pem     RSA key pair that signs policy bundles (.signatures.json)
#   issuer-signing-key.json     the demo issuer's ES256 key (JWK): `npx portcullis demo token --dir docker/certs`
#   issuer.json, jwks.json      the issuer name tokens carry, and its public keys for the gateway
# Usage: docker/make-certs.sh [dir]   (an existing file is kept; delete the folder to start afresh)
set -euo pipefail
cd "$(dirname "$0")"
dir="${1:-certs}"
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
umask 077
issuer="https://issuer.portcullis.demo"
spiffe="spiffe://portcullis.demo/gateway"

if [[ ! -s ca.key ]]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
  openssl req -x509 -new -key ca.key -sha256 -days 825 -subj "/CN=Portcullis Compose Demo CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt
fi

# leaf <name> <CN> <extendedKeyUsage> <subjectAltName>
leaf() {
  [[ -s "$1.crt" && -s "$1.key" ]] && return
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 365 -out "$1.crt" \
    -extfile <(printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' "$3" "$4") 2>/dev/null
  rm -f "$1.csr"
}
leaf gateway portcullis-gateway serverAuth "DNS:localhost,DNS:gateway,IP:127.0.0.1"
leaf gateway-client portcullis-gateway clientAuth "URI:$spiffe"
leaf function demo-function serverAuth "DNS:function,DNS:localhost"
leaf bundles bundle-server serverAuth "DNS:bundles,DNS:localhost"
rm -f ca.srl

if [[ ! -s bundle-signing.key ]]; then
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out bundle-signing.key 2>/dev/null
  openssl pkey -in bundle-signing.key -pubout -out bundle-signing.pem
fi

if [[ ! -s issuer-signing-key.json ]]; then
  # JWK export by Node's own crypto (the project already needs Node); the kid is random.
  node --input-type=module -e '
    import { generateKeyPairSync, randomUUID } from "node:crypto"
    import { writeFileSync } from "node:fs"
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" })
    const meta = { kid: randomUUID(), alg: "ES256", use: "sig" }
    writeFileSync("issuer-signing-key.json", JSON.stringify({ ...privateKey.export({ format: "jwk" }), ...meta }, null, 2) + "\n", { mode: 0o600 })
    writeFileSync("jwks.json", JSON.stringify({ keys: [{ ...publicKey.export({ format: "jwk" }), ...meta }] }, null, 2) + "\n")
  '
  printf '{ "issuer": "%s" }\n' "$issuer" > issuer.json
fi

# Demo only: the containers' users (uid 1000 for the gateway and the function, the images' own for
# nginx and OPA) must read these through a bind mount whoever ran this script, so the keys they use are
# readable by all, inside a folder that is git-ignored and kept out of the image. Real keys belong in
# Docker secrets or Kubernetes Secrets (see docker/kubernetes/). The CA key stays private.
chmod 755 .
chmod 644 ./*.crt ./*.pem ./*.key ./*.json
chmod 600 ca.key
echo "made $(pwd)" >&2
