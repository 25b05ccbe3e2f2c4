"""The one source-to-destination mapping every emitted file (and the push itself) is written from.

Naming modes, chosen at load time (``--naming``):

- ``upstream`` (the default): an image pulled from a registry keeps its upstream path under the prefix,
  ``PREFIX/<upstream host>/<path>`` (``REG/haystack/docker.io/opensearchproject/opensearch``), as Zarf
  and Hauler do. It is the default because it is the only naming under which node-level mirrors
  serve images by the name a pod or the node asks for: containerd (and k3s/RKE2) mirror a whole
  registry and keep the repository path, so ``docker.io/opensearchproject/opensearch`` can only be
  served from ``.../docker.io/opensearchproject/opensearch``. Names from different upstreams never
  collide either. A host with a port is written with ``_`` (``127.0.0.1_5000``), since ``:`` is not
  allowed in a repository path.
- ``flat``: ``PREFIX/<name>`` with the IMAGES.md name (what airgap did before), for registries whose
  rules want short names. Node mirrors then cannot serve the upstream names; the values file can.

Images that do not come from a registry (builds, ``oci:`` layouts) are ``PREFIX/<name>`` in both.
"""

from __future__ import annotations

from dataclasses import dataclass

from airgap.bundle.format import BundleImage, BundleManifest
from airgap.errors import InputError
from airgap.model.reference import DOCKER_HUB, Reference
from airgap.registry.client import Target

NAMINGS = ("upstream", "flat")
DEFAULT_NAMING = "upstream"


@dataclass(frozen=True)
class ImageMapping:
    name: str                    # the bundle's image name
    source: Reference | None     # None for sources that are not registries (oci:DIR:REF, builds)
    source_text: str
    registry: str                # destination host[:port]
    repository: str              # destination repository (prefix included)
    tag: str
    digest: str
    identity: str = ""           # the docker-reference its signatures name

    @property
    def destination(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def upstream(self) -> str | None:
        """``host/path`` of the upstream repository, as policies and mirrors name it."""
        return f"{self.source.registry}/{self.source.repository}" if self.source is not None else None

    def source_names(self) -> list[str]:
        """How manifests may write the source image without tag or digest: Docker Hub images have
        short forms (``opensearchproject/opensearch``, ``nginx``) besides the full one."""
        if self.source is None:
            return []
        full = f"{self.source.registry}/{self.source.repository}"
        names = [full]
        if self.source.registry == DOCKER_HUB:
            names.append(self.source.repository)
            if self.source.repository.startswith("library/"):
                names.append(self.source.repository[len("library/"):])
        return names


def _source_ref(text: str) -> Reference | None:
    if not text or text.startswith(("oci:", "oci-archive:", "docker-archive:", "dir:", "build:", "artifact:")):
        return None
    try:
        return Reference.parse(text)
    except InputError:
        return None


def host_component(host: str) -> str:
    """An upstream host as one repository path component (``:`` is not allowed in names)."""
    return host.lower().replace(":", "_")


def upstream_path(host: str, repository: str) -> str:
    return f"{host_component(host)}/{repository}"


def check_naming(naming: str) -> str:
    if naming not in NAMINGS:
        raise InputError(f"--naming {naming!r}: choose {' or '.join(NAMINGS)}")
    return naming


def repository_for(image: BundleImage, target: Target, naming: str = DEFAULT_NAMING) -> str:
    """Where one bundle image is pushed on the target."""
    src = _source_ref(image.source) if check_naming(naming) == "upstream" else None
    if src is None:
        return target.repository(image.name)
    return target.repository(upstream_path(src.registry, src.repository))


def upstream_base(target: Target, host: str) -> str:
    """The repository path under which ``host``'s images live in upstream naming (mirror roots)."""
    return target.repository(host_component(host))


def mappings(manifest: BundleManifest, target: Target, naming: str = DEFAULT_NAMING) -> list[ImageMapping]:
    return [ImageMapping(i.name, _source_ref(i.source), i.source, target.host, repository_for(i, target, naming),
                         i.tag, i.digest, i.identity) for i in manifest.images]
