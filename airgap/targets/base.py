"""What a kind of target registry is: one object per kind (airgap/targets/kinds/), behind one protocol.

A kind says how to recognise its registry, how to open it (where its API lives, where credentials
come from), what must be created before a push, and the quirks that change what a load does: cross-
repository mount, the referrers API, whether tags can be frozen, what it refuses to store. Code asks
the opened target; it never tests ``kind == "nexus"``. Anything a kind does not change is the
distribution-spec behaviour every registry gets (airgap/places/registry.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airgap.errors import NotFound, RegistryError
from airgap.model import Digest
from airgap.model.manifest import ImageIndex, Manifest
from airgap.places.registry import RegistryStore
from airgap.progress import Progress
from airgap.registry.client import RegistryClient, RegistryOptions, Target
from airgap.registry.listing import paged


@dataclass(frozen=True)
class Detection:
    kind: str
    reason: str


@dataclass(frozen=True)
class OpenTarget:
    """A target registry opened through its kind: every command that talks to one holds this."""

    target: Target          # as the cluster names it (Nexus /repository/<repo>/ rewritten)
    client: RegistryClient
    detection: Detection
    impl: TargetKind
    mount: bool             # the kind's cross-repository mount, or what --mount/--no-mount said
    state: Any = None       # what the kind keeps for this registry (ECR: its API client)
    #: repository -> {tag: digest (None: no such tag)}, as this command saw or wrote it: every store
    #: of one repository shares its answers, so a no-op reload asks about each tag once.
    tags: dict[str, dict[str, Digest | None]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def kind(self) -> str:
        return self.detection.kind

    @property
    def title(self) -> str:
        return self.impl.title

    def store(self, repository: str) -> RegistryStore:
        """A repository of this target as a place, with the kind's mount behaviour; its tags are
        asked once per command."""
        return RegistryStore(self.client, repository, mount=self.mount, tags=self.tags.setdefault(repository, {}))

    def prepare(self, repositories: list[str], create_namespaces: bool, progress: Progress) -> list[str]:
        return self.impl.prepare(self, repositories, create_namespaces, progress)

    def tags_immutable(self, repository: str) -> bool | None:
        return self.impl.tags_immutable(self, repository)

    def repositories(self, max_pages: int | None = None) -> list[str]:
        return self.impl.repositories(self, max_pages)

    def check_manifest(self, manifest: Manifest, where: str) -> None:
        self.impl.check_manifest(self, manifest, where)

    def close(self) -> None:
        self.client.close()


class TargetKind:
    """The generic OCI distribution registry; each other kind overrides what its registry does differently.

    A new kind is one module in airgap/targets/kinds/ that defines ``KIND = MyKind()``: the registry
    (airgap/targets/kinds/__init__.py) finds it, ``--target`` offers it and auto-detection asks it.
    """

    name = "generic"
    title = "OCI distribution registry"
    #: Detection asks kinds in this order (name checks first, then network probes); generic is the fallback.
    order = 100
    #: Cross-repository blob mount (POST ?mount=&from=). False where asking costs a POST and a cancelled
    #: upload session per blob for nothing.
    mount = True
    #: The OCI referrers API (GET /v2/<name>/referrers/<digest>): True, False, or None (probe it).
    #: Without it, referrers go under the tag schema sha256-<hex> (and cosign's .sig/.att tags).
    referrers: bool | None = None
    #: prepare() writes to the target (projects, repositories): the load verifies every blob first.
    provisions = False
    #: For `airgap probe`: what must exist before a push, and what prepare() does about it.
    namespace_rule = "implicit"
    namespace_plan = "nothing to create: repositories appear on first push"
    #: attach() installs the kind's own credential source (ECR's AWS token) instead of docker config.
    brings_credentials = False
    auth_scheme = ""
    #: For `airgap probe` when the auth scheme cannot be seen from GET /v2/.
    auth_note = "docker config.json / --username (Basic or Bearer token, as the registry asks)"

    # -- recognising it -------------------------------------------------------------------------
    def detect_name(self, target: Target) -> str | None:
        """The reason ``target``'s address alone says it is this kind (no request), else None."""
        return None

    def detect(self, target: Target, client: RegistryClient) -> str | None:
        """The reason the registry's anonymous answers say it is this kind, else None. Read only."""
        return None

    # -- opening it -----------------------------------------------------------------------------
    def route(self, target: Target) -> tuple[Target, str]:
        """The target as the cluster will name it, and the client's ``api_root`` ("" for /v2/)."""
        return target, ""

    def open(self, target: Target, options: RegistryOptions, detection: Detection,
             mount: bool | None = None, client: RegistryClient | None = None) -> OpenTarget:
        """``client``: the one detection used (its requests were anonymous), taken over; else a new one."""
        client = client or RegistryClient(target.host, options)
        try:
            routed, client.api_root = self.route(target)
            state = self.attach(routed, client)
        except BaseException:
            client.close()
            raise
        return OpenTarget(routed, client, detection, self, self.mount if mount is None else mount, state)

    def attach(self, target: Target, client: RegistryClient) -> Any:
        """Set up what the kind needs on a fresh client (credentials); returns its per-target state."""
        return None

    # -- before the first push ------------------------------------------------------------------
    def prepare(self, opened: OpenTarget, repositories: list[str], create_namespaces: bool,
                progress: Progress) -> list[str]:
        """Make every repository pushable; returns what was created. Called after every other check."""
        return []

    def tags_immutable(self, opened: OpenTarget, repository: str) -> bool | None:
        """Whether the repository's tags cannot move (None: they may be frozen, the target cannot tell us)."""
        return False

    def check_manifest(self, opened: OpenTarget, manifest: Manifest, where: str) -> None:
        """Refuse, before the first push, a manifest this registry would refuse (raise InputError)."""

    # -- reading it -----------------------------------------------------------------------------
    def repositories(self, opened: OpenTarget, max_pages: int | None = None) -> list[str]:
        """Every repository under the target's prefix (distribution-spec catalog, paged; RegistryError
        beyond ``max_pages`` pages)."""
        client, target = opened.client, opened.target
        try:
            repos = paged(client, f"{client.api_root}/v2/_catalog", "repositories", "registry:catalog:*", max_pages)
        except (NotFound, RegistryError) as exc:
            raise RegistryError(f"registry {client.host} does not list its repositories ({exc}); name them with "
                                "--repository") from None
        if client.api_root:  # Nexus's per-repository endpoint lists names without the hosted repository
            hosted = client.api_root.rsplit("/", 1)[1]
            repos = [f"{hosted}/{r}" for r in repos]
        prefix = f"{target.prefix}/" if target.prefix else ""
        return [r for r in repos if r.startswith(prefix)]

    @property
    def may_freeze_tags(self) -> bool:
        return type(self).tags_immutable is not TargetKind.tags_immutable


def index_without_media_type(manifest: Manifest) -> bool:
    """An image index whose JSON has no top-level mediaType (allowed by OCI, refused by some registries)."""
    if not isinstance(manifest, ImageIndex):
        return False
    import json
    try:
        return not json.loads(manifest.data).get("mediaType")
    except ValueError:
        return False
