"""Files that point a cluster at the private registry, all written from one mapping."""

from __future__ import annotations

from pathlib import Path

from airgap.bundle.format import BundleManifest
from airgap.emit import containerd, kustomize, registries_conf
from airgap.emit.mapping import mappings
from airgap.emit.values import render_values
from airgap.errors import InputError
from airgap.fsutil import atomic_write
from airgap.registry.client import Target

EMITTERS = ("values", "containerd", "registries-conf", "kustomize")
VALUES_FILE = "values-airgap.yaml"


def parse_emit(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in EMITTERS]
    if bad:
        raise InputError(f"--emit: unknown {', '.join(bad)} (choose from {', '.join(EMITTERS)})")
    return kinds


def render_all(kinds: tuple[str, ...], manifest: BundleManifest, target: Target, bundle_name: str, *,
               insecure: bool = False, ca_file: str | None = None) -> dict[str, str]:
    """Relative path under the output directory -> content."""
    maps = mappings(manifest, target)
    out: dict[str, str] = {}
    if "values" in kinds:
        out[VALUES_FILE] = render_values(manifest, target, bundle_name)
    if "containerd" in kinds:
        for rel, text in containerd.render(maps, target, insecure=insecure, ca_file=ca_file).items():
            out[f"containerd/certs.d/{rel}"] = text
    if "registries-conf" in kinds:
        out["registries.conf"] = registries_conf.render(maps, target, insecure=insecure)
    if "kustomize" in kinds:
        out["kustomize/kustomization.yaml"] = kustomize.render(maps, target)
    return out


def write_all(out_dir: Path, files: dict[str, str]) -> list[Path]:
    written = []
    for rel, text in files.items():
        path = Path(out_dir) / rel
        atomic_write(path, text.encode())
        written.append(path)
    return written
