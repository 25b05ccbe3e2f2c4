"""Descriptors: the (media type, digest, size) triple that points at every piece of content."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airgap.errors import InputError
from airgap.model.digest import Digest


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InputError(f"not a platform: {text!r} (expected OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64)")
        return cls(*parts)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Platform | None:
        if not data:
            return None
        return cls(data.get("os", ""), data.get("architecture", ""), data.get("variant", "") or "")

    def matches(self, other: Platform) -> bool:
        """True when ``other`` (from an index) is what this filter asks for; no variant here means any."""
        return (self.os == other.os and self.architecture == other.architecture
                and (not self.variant or self.variant == other.variant))

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    #: what a referrer is (an SBOM, a signature), copied from its manifest into index entries
    artifact_type: str = field(default="", compare=False, hash=False)
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "manifest") -> Descriptor:
        try:
            size = int(data["size"])
            if size < 0:
                raise ValueError
            return cls(
                media_type=str(data.get("mediaType", "")),
                digest=Digest.parse(data["digest"]),
                size=size,
                platform=Platform.from_json(data.get("platform")),
                artifact_type=str(data.get("artifactType") or ""),
                annotations=dict(data.get("annotations") or {}),
                raw=dict(data),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"{where}: malformed descriptor {str(data)[:200]}") from exc

    def to_json(self) -> dict[str, Any]:
        if self.raw:
            return dict(self.raw)
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.platform:
            out["platform"] = {"architecture": self.platform.architecture, "os": self.platform.os}
            if self.platform.variant:
                out["platform"]["variant"] = self.platform.variant
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out
