"""Startup is part of every command's time (issue 14: a no-op reload is mostly the process starting):
``airgap --version`` and ``airgap --help`` import neither the HTTP stack nor the terminal UI, and
whatever imports httpx does not drag in httpx's own command-line client (rich, pygments)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("httpx", "httpcore", "rich", "yaml", "cryptography", "pygments")


def _imported(*argv: str) -> set[str]:
    """The top-level packages ``python -X importtime -m airgap ARGV`` imported."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "airgap", *argv], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "airgap" in names  # the listing was read
    return names


@pytest.mark.parametrize("argv", [["--version"], ["--help"]])
def test_version_and_help_import_no_http_stack_or_terminal_ui(argv):
    assert sorted(_imported(*argv) & set(HEAVY)) == []


def test_importing_the_registry_client_does_not_import_httpx_command_line_client():
    code = ("import sys, airgap.registry.client, httpx; "
            "print(sorted(m for m in ('rich', 'pygments') if m in sys.modules)); "
            "print(httpx.Client is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["[]", "True"]


def test_piped_progress_imports_no_rich():
    code = ("import io, sys; from airgap.progress import make_progress; p = make_progress(stream=io.StringIO()); "
            "p.note('x'); print(type(p).__name__, 'rich' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["PlainProgress", "False"]
