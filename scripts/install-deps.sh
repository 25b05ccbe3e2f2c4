#!/usr/bin/env bash
# Installs what `make test`, `make demo` and `make bench` need on a fresh Debian/Ubuntu host:
# the real registry (docker-registry), skopeo (second opinion), htpasswd (auth fixture), nginx (Nexus
# stand-in), the two image builders (buildah; dockerd from docker.io), busybox-static (the demo's
# locally made base image), git (`--source URL@REF`), then the Python virtualenv with the package and
# its test extras. Idempotent: only what is missing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || need+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)  # reverse proxy playing Nexus in tests
command -v unzip >/dev/null 2>&1 || need+=(unzip)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v buildah >/dev/null 2>&1 || need+=(buildah)
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)  # static /bin/busybox: the demo base image
command -v git >/dev/null 2>&1 || need+=(git)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)  # promtool: `promtool test rules` on the chart's alerts
command -v age-keygen >/dev/null 2>&1 || need+=(age)       # keys for the chart's SOPS example test
command -v containerd >/dev/null 2>&1 && command -v ctr >/dev/null 2>&1 || need+=(containerd)  # node-config tests: ctr pull --hosts-dir
command -v patchelf >/dev/null 2>&1 || need+=(patchelf)  # scripts/install-trixie.sh podman: relocated trixie binary
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if ((${#need[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing with apt-get: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/pip" install -q --upgrade pip
  # The distribution was called `airgap` before it became airgap-oci: drop that editable install.
  "$VENV/bin/pip" uninstall -q -y airgap >/dev/null 2>&1 || true
  "$VENV/bin/pip" install -q -e '.[test]'
  touch "$stamp"
fi
