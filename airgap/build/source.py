"""Where the first-party sources come from: a checkout on disk, or ``GIT_URL@REF`` cloned into a cache.

The tree also yields what the OCI labels record: the repository URL and the commit that was built.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from airgap.errors import InputError

_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class SourceTree:
    root: Path
    url: str | None = None        # org.opencontainers.image.source
    revision: str | None = None   # org.opencontainers.image.revision (the commit)

    @property
    def description(self) -> str:
        if self.url:
            return f"{self.url}@{(self.revision or '?')[:12]} ({self.root})"
        return str(self.root)


def resolve_source(spec: str | None, default_dir: Path, cache: Path) -> SourceTree:
    """``spec`` is a directory, ``GIT_URL@REF``, or None (the directory holding IMAGES.md)."""
    if spec is None:
        return _local(default_dir)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _local(path)
    url, at, ref = spec.rpartition("@")
    if not at or not url or not ref or ":" in ref:
        raise InputError(f"--source {spec}: not a directory, and not GIT_URL@REF "
                         "(e.g. https://github.com/deepset-ai/haystack-rag-app@v0.1.0)")
    return clone(url, ref, cache)


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    if shutil.which("git") is None:
        raise InputError("git is not installed (apt-get install git); it is needed for --source GIT_URL@REF")
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})  # never hang on a password prompt


def _local(root: Path) -> SourceTree:
    root = root.resolve()
    if not root.is_dir():
        raise InputError(f"source directory {root} does not exist")
    # A checkout records its commit and origin in the labels; a plain directory just has none.
    rev = _git("rev-parse", "HEAD", cwd=root) if shutil.which("git") else None
    if rev is None or rev.returncode != 0:
        return SourceTree(root)
    origin = _git("remote", "get-url", "origin", cwd=root)
    return SourceTree(root, origin.stdout.strip() if origin.returncode == 0 else None, rev.stdout.strip())


def clone(url: str, ref: str, cache: Path) -> SourceTree:
    """Shallow-fetch ``ref`` of ``url`` into ``cache`` (one directory per URL) and check it out.

    A full commit id already checked out is reused without touching the network, so a pinned ref
    rebuilds offline; a branch or tag is fetched again (it may have moved).
    """
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    root = cache / key
    if root.is_dir() and _SHA.match(ref):
        head = _git("rev-parse", "HEAD", cwd=root)
        if head.returncode == 0 and head.stdout.strip() == ref:
            return SourceTree(root.resolve(), url, ref)
    root.mkdir(parents=True, exist_ok=True)
    if not (root / ".git").is_dir():
        _check(_git("init", "-q", str(root)), url, ref)
    fetched = _git("fetch", "-q", "--depth", "1", url, ref, cwd=root)
    if fetched.returncode != 0 and _SHA.match(ref):
        # Some servers refuse to serve an arbitrary commit shallowly; fetch everything, then check out.
        fetched = _git("fetch", "-q", url, cwd=root)
        target = ref
    else:
        target = "FETCH_HEAD"
    _check(fetched, url, ref)
    _check(_git("checkout", "-q", "--force", "--detach", target, cwd=root), url, ref)
    _check(_git("clean", "-q", "-ffdx", cwd=root), url, ref)
    head = _git("rev-parse", "HEAD", cwd=root)
    _check(head, url, ref)
    return SourceTree(root.resolve(), url, head.stdout.strip())


def _check(proc: subprocess.CompletedProcess, url: str, ref: str) -> None:
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise InputError(f"--source {url}@{ref}: git failed: {last}")
