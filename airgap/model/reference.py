"""Image references as Docker and the OCI distribution spec write them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from airgap.errors import InputError
from airgap.model.digest import Digest

DOCKER_HUB = "docker.io"
# Docker Hub's names: ``docker.io`` is the name images carry, not an API (https://docker.io/v2/ answers
# 301 to the web site, docker/hub-feedback#1767); ``index.docker.io`` is the legacy name; the API host
# clients use is registry-1.docker.io (what docker and containerd resolve docker.io to).
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"  # how `docker login` keys Hub credentials
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # ASCII only, as the distribution spec says
HOST_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                     r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


def canonical_registry(host: str) -> str:
    """The registry's name as references carry it: every Docker Hub alias is ``docker.io``."""
    return DOCKER_HUB if host.lower() in DOCKER_HUB_ALIASES else host


def api_host(host: str) -> str:
    """Where a registry's API answers: the one place a registry name becomes a URL host."""
    return DOCKER_HUB_API if host.lower() in DOCKER_HUB_ALIASES else host


def is_docker_hub(host: str) -> bool:
    return host.lower() in DOCKER_HUB_ALIASES


def valid_repository(path: str) -> bool:
    return bool(_PATH_RE.match(path))


def valid_tag(tag: str) -> bool:
    return bool(_TAG_RE.match(tag))


@dataclass(frozen=True)
class Reference:
    """``registry/repository[:tag][@digest]``; ``registry`` is host[:port]."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        original = text
        text = text.strip()
        if not text:
            raise InputError("empty image reference")
        digest = None
        if "@" in text:
            text, _, d = text.partition("@")
            digest = Digest.parse(d)
        tag = None
        last = text.rsplit("/", 1)[-1]
        if ":" in last:
            text, _, tag = text.rpartition(":")
            if not valid_tag(tag):
                raise InputError(f"bad tag {tag!r} in image reference {original!r}")
        first, sep, rest = text.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            registry, path = first, rest
        else:
            registry, path = DOCKER_HUB, text
        if not HOST_RE.match(registry):
            raise InputError(f"bad registry host {registry!r} in image reference {original!r}")
        registry = canonical_registry(registry)
        if registry == DOCKER_HUB and "/" not in path:
            path = f"library/{path}"
        if not valid_repository(path):
            raise InputError(f"bad repository {path!r} in image reference {original!r} "
                             "(lower-case letters, digits and . _ - separators)")
        if tag is None and digest is None:
            tag = "latest"
        return cls(registry, path, tag, digest)

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def api_host(self) -> str:
        """The host to send this reference's API requests to (Docker Hub: registry-1.docker.io)."""
        return api_host(self.registry)

    @property
    def ref(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        return str(self.digest) if self.digest else (self.tag or "latest")
