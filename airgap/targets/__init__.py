"""Target registries as kinds (airgap/targets/kinds/: one module per kind, found by the registry there),
the opened target every command pushes to or reads from, and the tag plan a load makes before a push."""

from airgap.targets.base import Detection, OpenTarget, TargetKind
from airgap.targets.kinds import get as kind
from airgap.targets.kinds import names as kind_names
from airgap.targets.kinds import register
from airgap.targets.session import open_target

__all__ = ["Detection", "OpenTarget", "TargetKind", "kind", "kind_names", "open_target", "register"]
