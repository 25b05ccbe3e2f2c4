"""Target registries as kinds (airgap/targets/kinds/: one module per kind, found by the registry there),
the opened target every command pushes to or reads from, and the tag plan a load makes before a push."""

from airgap.targets.base import Detection, OpenTarget, TargetKind
from airgap.targets.kinds import get as kind, names as kind_names, register
from airgap.targets.session import open_target, provision

__all__ = ["Detection", "OpenTarget", "TargetKind", "kind", "kind_names", "register", "open_target", "provision"]
