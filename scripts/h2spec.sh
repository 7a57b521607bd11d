#!/usr/bin/env bash
# h2spec, the HTTP/2 conformance tester (test/security/h2spec.test.ts), pinned and installed into
# ~/.cache/portcullis on first use, like the OPA CLI and kubeconform. The Go module proxy serves
# github.com/summerwind/h2spec up to v2.2.1+incompatible (the later release tags are not modules it
# serves); that version has no go.mod, so `go install ...@v2.2.1+incompatible` would take whatever
# its dependencies' latest versions are. It is built here in a throwaway module that pins them.
# Prints the binary's path.
set -euo pipefail

H2SPEC_VERSION=v2.2.1+incompatible
cache="${XDG_CACHE_HOME:-$HOME/.cache}/portcullis"
bin="$cache/h2spec-${H2SPEC_VERSION%%+*}/h2spec"

if [[ ! -x "$bin" ]]; then
  echo "installing h2spec $H2SPEC_VERSION (go build, once)" >&2
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  cat >"$work/go.mod" <<MOD
module portcullis.local/h2spec

go 1.21

require (
	github.com/summerwind/h2spec $H2SPEC_VERSION
	github.com/fatih/color v1.19.0
	github.com/mattn/go-colorable v0.1.14
	github.com/mattn/go-isatty v0.0.20
	github.com/spf13/cobra v1.10.2
	github.com/spf13/pflag v1.0.9
	golang.org/x/net v0.63.0
	golang.org/x/sys v0.50.0
	golang.org/x/text v0.44.0
)
MOD
  mkdir -p "$(dirname "$bin")"
  (cd "$work" && GOFLAGS=-mod=mod go mod download >&2 && GOFLAGS=-mod=mod go build -o "$bin.tmp" github.com/summerwind/h2spec/cmd/h2spec >&2)
  mv "$bin.tmp" "$bin"
fi
echo "$bin"
