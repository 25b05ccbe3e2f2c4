"""Upstream attachments carried in a bundle and relocated at load (signatures, attestations, SBOMs).

Bundle side: the copy engine discovers each image's and each platform manifest's attachments at the
source (referrers API, tag schema, cosign tags; recursively: :mod:`airgap.copy`), and the signed bundle
manifest lists every one (:func:`entries`), so the reader resolves exactly those
(:meth:`airgap.bundle.reader.BundleReader.attachments`) and nothing else in the tar is trusted as one.

Load side: the listed attachments go with their image (:func:`selected`) and the engine writes them
byte for byte: through the referrers API where the target has it, else merged into the subject's
``sha256-<hex>`` tag-schema index (never dropping another tool's entries), cosign tags under their
tags. On a target whose tags are immutable an index that exists can never be rewritten, so a load
that would need to is refused before the first push (:func:`check_relocation`): a regulated site that
keeps SBOMs must not find one silently missing, and ``--attachments`` says what to leave behind.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from airgap.copy import Attached, AttachmentFilter, CopyJob, _Attachment, select_attachments
from airgap.errors import InputError, TagConflict
from airgap.model import Digest
from airgap.model.attachment import REFERRER, SBOM, Attachment, kind_of, referrers_tag
from airgap.model.manifest import ImageIndex
from airgap.places.base import Store
from airgap.progress import Progress

if TYPE_CHECKING:
    from airgap.bundle.format import BundleImage
    from airgap.bundle.reader import BundleReader
    from airgap.targets.base import OpenTarget

#: the default of ``bundle --attachments`` and ``load --attachments``: regulated sites must keep SBOMs
#: and provenance, and the signed manifest pins each one, so carrying them costs a few KiB per image.
DEFAULT = "all"


_WORDS = {"all", "none", "signatures", "sboms", "attestations", "signature", "sbom", "attestation", "other"}


def check_spec(spec: str, option: str = "--attachments") -> AttachmentFilter | None:
    """The filter ``spec`` names (:func:`airgap.copy.select_attachments`); a word that is neither a kind
    nor a media type (``type/subtype``) is a typo that would silently carry nothing: refused."""
    for word in (w.strip() for w in spec.split(",")):
        if word and word not in _WORDS and word.count("/") != 1:
            raise InputError(f"{option} {spec!r}: {word!r} is not all, none, signatures, sbom, attestation, "
                             "other or an artifact type (type/subtype)")
    return select_attachments(spec)


def entries(found: Iterable[_Attachment], skip_tags: frozenset[str] = frozenset()) -> list[dict]:
    """The manifest's ``attachments`` for one image, in resolution order (subjects first). A cosign tag
    in ``skip_tags`` is ours (the bundle's own signature takes that tag) and is left behind, with what
    refers to it."""
    out: list[dict] = []
    dropped: set[Digest] = set()
    seen: set[Digest] = set()
    for a in found:
        att = a.att
        if (att.tag and att.tag in skip_tags) or att.subject in dropped or att.digest in seen:
            dropped.add(att.digest)
            continue
        seen.add(att.digest)
        entry = {"digest": str(att.digest), "subject": str(att.subject), "artifactType": att.artifact_type,
                 "mediaType": a.manifest.media_type, "size": len(a.manifest.data), "foundBy": att.found_by,
                 "blobBytes": sum(b.size for b in a.manifest.blobs())}
        if att.tag:
            entry["tag"] = att.tag
        out.append(entry)
    return out


def sbom_formats(items: Iterable[dict]) -> list[str]:
    """Which SBOM formats travel among an image's attachments: spdx, cyclonedx, other (e.g. syft)."""
    out: set[str] = set()
    for a in items:
        t = str(a.get("artifactType", "")).lower()
        if kind_of(t) != SBOM:
            continue
        out.add("spdx" if "spdx" in t else "cyclonedx" if "cyclonedx" in t else "other")
    return sorted(out)


def kinds(items: Iterable[dict]) -> dict[str, int]:
    """Attachments per kind (signature, attestation, sbom, other)."""
    out: dict[str, int] = {}
    for a in items:
        k = kind_of(str(a.get("artifactType", "")))
        out[k] = out.get(k, 0) + 1
    return out


def selected(reader: BundleReader, image: BundleImage, src: Store, wanted: AttachmentFilter | None) -> list[Attached]:
    """The listed attachments of ``image`` that ``wanted`` keeps, with what refers to them (an SBOM left
    behind takes its signature along: it would have no subject at the target)."""
    if wanted is None:
        return []
    out: list[Attached] = []
    listed = reader.attachments(image)
    kept = {m.digest for m in reader.image_manifests(image)} if listed else set()
    for att, _ in listed:
        if att.subject in kept and wanted(att):
            kept.add(att.digest)
            out.append(Attached(att, src))
    return out


def check_relocation(jobs: list[CopyJob], opened: OpenTarget, progress: Progress) -> None:
    """Before the first push: where the target has no referrers API, its tags are immutable and a
    subject's ``sha256-<hex>`` index already exists without every referrer this load brings, the
    index would have to be rewritten: refused, naming the image and the tag."""
    conflicts: list[str] = []
    for job in jobs:
        dst = job.dst
        referrers = [a.attachment for a in job.attach if a.attachment.found_by == REFERRER]
        if not referrers or not dst.remote or not dst.tag_schema or dst.referrers_api:
            continue
        by_subject: dict[Digest, list[Attachment]] = {}
        for att in referrers:
            by_subject.setdefault(att.subject, []).append(att)
        state = None
        for subject, atts in by_subject.items():
            tag = referrers_tag(subject)
            existing = dst.fetch_tagged(tag)
            if existing is None:
                continue  # a new tag: written once, listing all of them
            listed = {d.digest for d in existing.manifests} if isinstance(existing, ImageIndex) else set()
            new = [a for a in atts if a.digest not in listed]
            if not new:
                continue
            if state is None:
                state = opened.tags_immutable(dst.repository)
            where = f"image {job.name}: {dst.description}:{tag}"
            if state:
                conflicts.append(f"{where} would need rewriting to list {len(new)} more referrer(s)")
            elif state is None:
                progress.note(f"warning: {where} is rewritten to list {len(new)} more referrer(s); "
                              "if tags are immutable there, the push fails")
    if conflicts:
        raise TagConflict(f"{opened.target} ({opened.title}) has no referrers API and does not let tags move: "
                          f"{'; '.join(conflicts[:3])}{' ...' if len(conflicts) > 3 else ''}. Nothing was pushed "
                          "(load with --attachments signatures or none to leave them behind, or lift the rule)")


__all__ = ["DEFAULT", "check_spec", "entries", "sbom_formats", "kinds", "selected", "check_relocation"]
