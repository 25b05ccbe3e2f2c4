"""Any OCI distribution registry (Distribution, zot, Quay, Artifactory, ...): the protocol as specified.

Everything a kind does not override in airgap/targets/base.py is what this one does: repositories
appear on first push, tags move, mounts are asked for, the referrers API is probed.
"""

from __future__ import annotations

from airgap.targets.base import TargetKind

KIND = TargetKind()
