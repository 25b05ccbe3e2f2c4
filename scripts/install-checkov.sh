#!/usr/bin/env bash
# Install checkov (the chart security scan in tests/chart/test_chart_security.py) into its own virtualenv,
# .tools/checkov-venv: its pinned dependencies would fight the test venv's.  Idempotent.
# Only PyPI is reached, and only here: the tests run checkov with no network at all.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CHECKOV_VENV:-$REPO/.tools/checkov-venv}"
WANT="3.3.30"   # checkov 3.3 (ENVIRONMENT.md: seen working here); pinned so the checks do not drift
if [ -x "$VENV/bin/checkov" ] && [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("checkov"))' 2>/dev/null)" = "$WANT" ]; then
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "checkov==$WANT"
echo "install-checkov: checkov $WANT in $VENV"
