#!/bin/sh
# Installs airgap (@DIST@ @VERSION@) into a new virtualenv from the wheels next to this script, with
# no network: no package index, no pip configuration, no PIP_* variable can add another source.
#
#   sh install.sh [--python PYTHON] [--ecr] [--keyless] [VENV]
#
# PYTHON: a CPython that locks/ has wheels for, 3.9 to 3.13 (default: python3); VENV: where the
# virtualenv goes (default: ./airgap-venv); --ecr adds boto3, for `airgap load --target ecr`;
# --keyless adds sigstore-python (CPython 3.10+), to re-check keyless upstream signatures here.
# Then run VENV/bin/airgap.
set -eu

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }

here=$(cd "$(dirname "$0")" && pwd)
python=python3
extras=""
venv=""
while [ $# -gt 0 ]; do
  case "$1" in
    --python) [ $# -ge 2 ] || { echo "install.sh: --python needs a value" >&2; exit 2; }; python=$2; shift 2 ;;
    --ecr) extras="${extras:+$extras,}ecr"; shift ;;
    --keyless) extras="${extras:+$extras,}keyless"; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) [ -z "$venv" ] || { echo "install.sh: one VENV only" >&2; exit 2; }; venv=$1; shift ;;
  esac
done
venv=${venv:-airgap-venv}
extra=${extras:+[$extras]}

command -v "$python" >/dev/null 2>&1 || { echo "install.sh: $python not found (give --python PYTHON)" >&2; exit 2; }
pytag=$("$python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
lock="$here/locks/$pytag.txt"  # the exact versions make dist locked for this CPython
if [ ! -f "$lock" ]; then
  echo "install.sh: $python is $("$python" -V 2>&1); the bundled wheels are for $(cd "$here/locks" && ls | sed 's/\.txt$//' | tr '\n' ' ')" >&2
  exit 2
fi
if [ -e "$venv" ]; then
  echo "install.sh: $venv already exists; remove it or name another directory" >&2
  exit 2
fi
# Exactly the files SHA256SUMS lists (the signed bundle manifest pins SHA256SUMS): an extra wheel
# dropped into wheels/, with a build tag, say, would outrank a pinned one.
listed=$(wc -l < "$here/SHA256SUMS")
found=$(cd "$here" && find . ! -type d ! -path ./SHA256SUMS | wc -l)
if ! (cd "$here" && sha256sum -c --quiet --strict SHA256SUMS) || [ "$listed" -ne "$found" ]; then
  echo "install.sh: $here does not hold exactly the files SHA256SUMS lists ($listed listed, $found found;" \
    "extract tools/ into an empty directory)" >&2
  exit 2
fi

pip_version=$(sed -n 's/^pip==//p' "$lock")
pip_wheel="$here/wheels/pip-$pip_version-py3-none-any.whl"
[ -f "$pip_wheel" ] || { echo "install.sh: $pip_wheel is missing" >&2; exit 2; }
# No pip from the distro (Debian/Ubuntu keep ensurepip in python3-venv; RHEL 8's python39 has pip
# 20.2, older than manylinux_2_28 wheels): the bundled pip runs from its wheel and installs itself.
if ! "$python" -m venv --without-pip "$venv"; then
  echo "install.sh: $python cannot make a virtualenv" >&2
  rm -rf "$venv"
  exit 2
fi
trap 'echo "install.sh: failed; removing $venv" >&2; rm -rf "$venv"' EXIT

for var in $(env | sed -n 's/^\(PIP_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$var"; done
PIP_CONFIG_FILE=/dev/null "$venv/bin/python" "$pip_wheel/pip" install -q --no-index --no-cache-dir \
  --disable-pip-version-check --find-links "$here/wheels" --constraint "$lock" pip "@DIST@$extra==@VERSION@"
version=$("$venv/bin/airgap" --version)
trap - EXIT
echo "installed $version as $venv/bin/airgap"
