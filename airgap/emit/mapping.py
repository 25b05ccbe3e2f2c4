"""The one source-to-destination mapping every emitted file is written from."""

from __future__ import annotations

from dataclasses import dataclass

from airgap.bundle.format import BundleManifest
from airgap.errors import InputError
from airgap.model.reference import DOCKER_HUB, Reference
from airgap.registry.client import Target


@dataclass(frozen=True)
class ImageMapping:
    name: str                    # the bundle's image name
    source: Reference | None     # None for sources that are not registries (oci:DIR:REF, builds)
    source_text: str
    registry: str                # destination host[:port]
    repository: str              # destination repository (prefix included)
    tag: str
    digest: str

    @property
    def destination(self) -> str:
        return f"{self.registry}/{self.repository}"

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


def mappings(manifest: BundleManifest, target: Target) -> list[ImageMapping]:
    return [ImageMapping(i.name, _source_ref(i.source), i.source, target.host, target.repository(i.name), i.tag,
                         i.digest) for i in manifest.images]
