"""The registry of target kinds: every module in this package that defines ``KIND`` is one.

``--target`` choices, auto-detection and every command that opens a target read this registry, so a
new registry kind is one file here (or one ``register()`` call for a kind that lives elsewhere).
Detection only reads, anonymously: a wrong guess costs a warning, never a write.
"""

from __future__ import annotations

import importlib
import pkgutil
from concurrent.futures import ThreadPoolExecutor

from airgap.errors import InputError
from airgap.registry.client import RegistryClient, Target
from airgap.targets.base import Detection, TargetKind

_KINDS: dict[str, TargetKind] = {}
_discovered = False


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        kind = getattr(module, "KIND", None)
        if isinstance(kind, TargetKind):
            _KINDS.setdefault(kind.name, kind)


def register(kind: TargetKind) -> TargetKind:
    """Add a kind (a plugin, a test); a later registration under the same name replaces the earlier."""
    _discover()
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    _KINDS.pop(name, None)


def all_kinds() -> list[TargetKind]:
    """Every kind, in detection order (generic, the fallback, last)."""
    _discover()
    return sorted(_KINDS.values(), key=lambda k: (k.order, k.name))


def names() -> list[str]:
    return [k.name for k in all_kinds()]


def get(name: str) -> TargetKind:
    _discover()
    try:
        return _KINDS[name]
    except KeyError:
        raise InputError(f"unknown target kind {name!r} (one of auto, {', '.join(names())})") from None


def detect(target: Target, client: RegistryClient) -> Detection:
    """Which kind ``target`` is: its address first (no request), then each kind's anonymous probe.

    The probes are independent reads, so they run at once: detection costs one round trip (two for
    Nexus's fallback) instead of one per kind; the first kind in detection order that says yes wins,
    as when they ran one after the other."""
    kinds = all_kinds()
    for kind in kinds:
        reason = kind.detect_name(target)
        if reason:
            return Detection(kind.name, reason)
    probing = [k for k in kinds if type(k).detect is not TargetKind.detect]  # the others never say yes
    if len(probing) > 1:
        with ThreadPoolExecutor(len(probing)) as pool:
            reasons = list(pool.map(lambda k: k.detect(target, client), probing))
    else:
        reasons = [k.detect(target, client) for k in probing]
    for kind, reason in zip(probing, reasons):
        if reason:
            return Detection(kind.name, reason)
    others = ", ".join(k.title for k in kinds if k.name != "generic")
    return Detection("generic", f"no {others} signature found")
