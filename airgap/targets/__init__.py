"""Target registries: what each kind needs (profiles), how to tell them apart (detect), and the
provisioning and auth that Harbor, ECR and Nexus ask for before a push."""

from airgap.targets.profiles import KINDS, PROFILES, Profile, profile_for
from airgap.targets.session import OpenTarget, open_target, provision

__all__ = ["KINDS", "PROFILES", "Profile", "profile_for", "OpenTarget", "open_target", "provision"]
