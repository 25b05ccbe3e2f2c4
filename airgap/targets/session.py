"""A target registry opened for a load: its kind (given or detected), profile, client, provisioning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airgap.errors import InputError
from airgap.progress import Progress
from airgap.registry.client import RegistryClient, RegistryOptions, Target
from airgap.targets import harbor, nexus
from airgap.targets.detect import Detection, detect
from airgap.targets.profiles import KINDS, Profile, profile_for


@dataclass(frozen=True)
class OpenTarget:
    target: Target          # as the cluster names it (Nexus /repository/<repo>/ rewritten)
    client: RegistryClient
    detection: Detection
    profile: Profile
    ecr: Any = None         # airgap.targets.ecr.Ecr for ECR targets (boto3 is imported only then)

    @property
    def kind(self) -> str:
        return self.detection.kind

    def close(self) -> None:
        self.client.close()


def open_target(target: Target, options: RegistryOptions, kind: str = "auto", *,
                mount: bool | None = None) -> OpenTarget:
    """Open a client for ``target``; ``kind`` "auto" detects it. ``mount`` overrides the profile."""
    if kind != "auto" and kind not in KINDS:
        raise InputError(f"unknown target kind {kind!r} (one of auto, {', '.join(KINDS)})")
    client = RegistryClient(target.host, options)
    ecr = None
    try:
        detection = detect(target, client) if kind == "auto" else Detection(kind, "given with --target")
        if detection.kind == "nexus":
            target, client.api_root = nexus.route(target)
        if detection.kind == "ecr":
            from airgap.targets.ecr import Ecr
            ecr = Ecr(target.host)
            client.auth.source = ecr.credential_source()
    except BaseException:
        client.close()
        raise
    profile = profile_for(detection.kind)
    if mount is not None:
        profile = profile.with_mount(mount)
    return OpenTarget(target, client, detection, profile, ecr)


def provision(t: OpenTarget, repositories: list[str], create_namespaces: bool, progress: Progress) -> list[str]:
    """Make sure every repository can be pushed to; returns what was created."""
    if t.profile.namespaces == "project":
        return harbor.ensure_projects(t.client, repositories, create_namespaces, progress)
    if t.profile.namespaces == "repository":
        # ECR refuses pushes into a repository that does not exist, whatever the credentials: create
        # them always (a no-op for existing ones); --create-namespaces is not needed for that.
        return t.ecr.ensure_repositories(repositories, progress)
    return []
