"""The content model: one set of types for every place content lives."""

from airgap.model.descriptor import Descriptor, Platform
from airgap.model.digest import Digest, DigestingReader, sha256_digest
from airgap.model.manifest import ImageIndex, ImageManifest, parse_manifest
from airgap.model.mediatypes import MediaType
from airgap.model.reference import Reference

__all__ = [
    "Descriptor", "Platform", "Digest", "DigestingReader", "sha256_digest",
    "ImageIndex", "ImageManifest", "parse_manifest", "MediaType", "Reference",
]
