#!/usr/bin/env bash
# Installs what `make test-app` needs on top of `make deps`: a real Prometheus (Debian), and .venv-app
# with the upstream application's own requirements (../shared/data/upstream/haystack-rag-app/backend/
# requirements.txt: haystack-ai, opensearch-haystack, sentence-transformers, FastAPI, uvicorn) plus a
# CPU build of torch. The app's heavy stack stays out of the tool's own .venv. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
UPSTREAM=../shared/data/upstream/haystack-rag-app
TORCH=torch==2.13.0

if ! command -v prometheus >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing with apt-get: prometheus"
  $SUDO apt-get -o DPkg::Lock::Timeout=900 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=900 install -y -qq prometheus >/dev/null
  # The package starts a system-wide Prometheus on :9090; the tests run their own.
  { command -v systemctl >/dev/null 2>&1 && $SUDO systemctl disable --now prometheus 2>/dev/null; } || true
fi
[ -f "$UPSTREAM/backend/requirements.txt" ] || { echo "install-app-deps: $UPSTREAM is absent: nothing to install"; exit 0; }

VENV=${APP_VENV:-.venv-app}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
stamp="$VENV/.installed-$(cat "$UPSTREAM/backend/requirements.txt" "$0" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q "$TORCH" -r "$UPSTREAM/backend/requirements.txt"
  touch "$stamp"
fi
