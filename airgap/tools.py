"""``tools/`` in a bundle: airgap's own offline installer, so what crosses the gap is one file.

The directory is the wheelhouse ``make dist`` builds (``install.sh``, ``SHA256SUMS``, ``wheels/``).
Every file becomes a bundle member ``tools/<path>`` listed in the signed manifest's ``files`` with
kind ``tool`` and its sha256, so the installer can be checked with the bundle's public key and
nothing but openssl (see README, "Install on the isolated host") before it runs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from airgap import __version__, limits
from airgap.bundle.format import BundleFile
from airgap.errors import DigestMismatch, InputError

TOOLS_DIR = "tools"
TOOL_KIND = "tool"
DIST_NAME = "airgap-oci"
ENV_VAR = "AIRGAP_TOOLS"  # a wheelhouse directory, or "none"; overrides the make dist default
CHUNK = limits.CHUNK


@dataclass(frozen=True)
class ToolFile:
    path: Path     # on disk
    entry: BundleFile

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes, checked against the sha256 recorded in the manifest as they stream."""
        h = hashlib.sha256()
        with open(self.path, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
                yield chunk
        if h.hexdigest() != self.entry.sha256:
            raise DigestMismatch(f"{self.path} (changed while bundling)", f"sha256:{self.entry.sha256}",
                                 f"sha256:{h.hexdigest()}")


def wheel_name(version: str = __version__) -> str:
    return f"{DIST_NAME.replace('-', '_')}-{version}-py3-none-any.whl"


def default_dir() -> Path | None:
    """``$AIRGAP_TOOLS``, else ``make dist``'s output next to this checkout, when it exists."""
    env = os.environ.get(ENV_VAR)
    if env is not None:
        return None if env in ("", "none") else Path(env)
    built = Path(__file__).resolve().parents[1] / "dist" / f"{DIST_NAME}-{__version__}"
    return built if built.is_dir() else None


def collect(directory: Path) -> list[ToolFile]:
    """Every file of a wheelhouse, in name order, hashed; refuses one made for another airgap version."""
    where = f"--tools {directory}"
    if not directory.is_dir():
        raise InputError(f"{where}: not a directory (make dist builds one under dist/)")
    if not (directory / "install.sh").is_file():
        raise InputError(f"{where}: no install.sh: not a wheelhouse made by make dist")
    if not (directory / "wheels" / wheel_name()).is_file():
        found = sorted(p.name for p in (directory / "wheels").glob(f"{DIST_NAME.replace('-', '_')}-*.whl"))
        raise InputError(f"{where}: has {', '.join(found) or 'no airgap-oci wheel'}, not {wheel_name()}: the "
                         f"bundle's tool is airgap {__version__}, so its installer must be too (rerun make dist)")
    out = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory).as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise InputError(f"{where}: {rel} is not a regular file")
        if path.is_dir():
            continue
        h = hashlib.sha256()
        size = 0
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
                size += len(chunk)
        out.append(ToolFile(path, BundleFile(f"{TOOLS_DIR}/{rel}", TOOL_KIND, h.hexdigest(), size, rel, __version__)))
    return out


__all__ = ["ENV_VAR", "TOOLS_DIR", "TOOL_KIND", "ToolFile", "collect", "default_dir", "wheel_name"]
