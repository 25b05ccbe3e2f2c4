"""Opening a target registry: its kind (given or detected) decides routing, credentials and quirks."""

from __future__ import annotations

from airgap.registry.client import RegistryClient, RegistryOptions, Target
from airgap.targets import kinds
from airgap.targets.base import Detection, OpenTarget


def open_target(target: Target, options: RegistryOptions, kind: str = "auto", *,
                mount: bool | None = None) -> OpenTarget:
    """Open ``target`` through its kind; ``kind`` "auto" detects it. ``mount`` overrides the kind's."""
    if kind != "auto":
        impl = kinds.get(kind)
        return impl.open(target, options, Detection(impl.name, "given with --target"), mount)
    client = RegistryClient(target.host, options)
    try:
        detection = kinds.detect(target, client)  # anonymous reads only
        impl = kinds.get(detection.kind)
    except BaseException:
        client.close()
        raise
    return impl.open(target, options, detection, mount, client)

