"""Files that point a cluster at the private registry, all written from one mapping."""

from __future__ import annotations

from pathlib import Path

from airgap import limits
from airgap.bundle.format import BundleManifest
from airgap.emit.mapping import DEFAULT_NAMING, mappings
from airgap.emit.values import render_values
from airgap.errors import InputError
from airgap.fsutil import atomic_write
from airgap.registry.client import Target

EMITTERS = ("values", "containerd", "registries-conf", "k3s", "kustomize")
VALUES_FILE = "values-airgap.yaml"  # the one values file name: --values-out's default and --emit values


def parse_emit(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in EMITTERS]
    if bad:
        raise InputError(f"--emit: unknown {', '.join(bad)} (choose from {', '.join(EMITTERS)})")
    return kinds


def _read_ca(ca_file: Path | None) -> bytes | None:
    if ca_file is None:
        return None
    try:
        data = Path(ca_file).read_bytes()
    except OSError as exc:
        raise InputError(f"--ca-file {ca_file}: {exc.strerror or exc}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data or len(data) > limits.CA_FILE_BYTES:
        raise InputError(f"--ca-file {ca_file}: not a PEM certificate bundle")
    return data


def render_all(kinds: tuple[str, ...], manifest: BundleManifest, target: Target, bundle_name: str, *,
               insecure: bool = False, ca_file: Path | None = None,
               naming: str = DEFAULT_NAMING) -> dict[str, str | bytes]:
    """Relative path under the output directory -> content. The registry's CA (``--ca-file``) is
    copied next to the files that name it, so the output works on a node that never saw the path."""
    # Imported here, not at the top: `airgap load` reads EMITTERS for every run, the renderers
    # (and yaml) only when --emit asks for them.
    from airgap.emit import containerd, k3s, kustomize, registries_conf

    maps = mappings(manifest, target, naming)
    ca = _read_ca(ca_file)
    out: dict[str, str | bytes] = {}
    if "values" in kinds:
        out[VALUES_FILE] = render_values(manifest, target, bundle_name, naming)
    if "containerd" in kinds:
        for rel, data in containerd.render(maps, target, insecure=insecure, ca=ca, naming=naming).items():
            out[f"containerd/certs.d/{rel}"] = data
    if "registries-conf" in kinds:
        out["registries.conf"] = registries_conf.render(maps, target, insecure=insecure)
        out.update(registries_conf.certs_d(target, None if insecure else ca))
    if "k3s" in kinds:
        out.update(k3s.render(maps, target, insecure=insecure, ca=ca, naming=naming))
    if "kustomize" in kinds:
        out["kustomize/kustomization.yaml"] = kustomize.render(maps, target)
    return out


def write_all(out_dir: Path, files: dict[str, str | bytes]) -> list[Path]:
    written = []
    for rel, data in files.items():
        path = Path(out_dir) / rel
        atomic_write(path, data if isinstance(data, bytes) else data.encode())
        written.append(path)
    return written
