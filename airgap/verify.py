"""Offline verification of a bundle: its signature, every image signature, every digest.

Order matters and is enforced: the bundle manifest's signature first (it pins everything else), then
the image signatures against the digests the manifest pins, then content. Nothing here writes.
"""

from __future__ import annotations

import hashlib
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from airgap import limits
from airgap.bundle.format import SIGNATURE_NAME, BundleImage
from airgap.bundle.reader import BundleReader
from airgap.errors import DigestMismatch
from airgap.model import Descriptor, Digest
from airgap.model.attachment import REFERRER, Attachment, classify
from airgap.model.manifest import ImageIndex
from airgap.progress import Progress
from airgap.sign.blob import verify_blob
from airgap.sign.cosign import SignatureError
from airgap.sign.formats import recorded_signatures
from airgap.sign.keys import PublicKey, load_public_key


@dataclass
class ImageCheck:
    name: str
    tag: str
    digest: str
    identity: str
    signatures_verified: int
    attachments: int = 0     # upstream attachments listed, each checked against its subject and digest
    upstream: str = ""  # the upstream's own signature, checked again here (or why it was not)


@dataclass
class VerifyReport:
    bundle: str
    release: str
    signer: str
    images: list[ImageCheck] = field(default_factory=list)
    blobs_checked: int = 0
    bytes_checked: int = 0
    files_checked: int = 0

    def to_json(self) -> dict:
        return {"bundle": self.bundle, "release": self.release, "signer": self.signer, "verified": True,
                "images": [vars(i) for i in self.images], "blobs_checked": self.blobs_checked,
                "bytes_checked": self.bytes_checked, "files_checked": self.files_checked}


def verify_signatures(reader: BundleReader, key: PublicKey) -> VerifyReport:
    where = str(reader.display)
    if SIGNATURE_NAME not in reader.members:
        raise SignatureError(f"{where} is not signed (no {SIGNATURE_NAME}); make it with `airgap bundle --key`, "
                             "or load it with --insecure-skip-verify")
    signature = reader.read_member(SIGNATURE_NAME, limit=limits.BUNDLE_SIGNATURE_BYTES)
    verify_blob(key, reader.manifest_bytes, signature, f"bundle {where}")
    m = reader.manifest
    report = VerifyReport(where, m.release, key.fingerprint)
    for image in m.images:
        # The same graph the load copies: the image's store, its manifests, the signatures it holds.
        store = reader.store(image.name)
        manifests = reader.image_manifests(image)
        root = manifests[0]
        needed = [root.digest] + ([c.digest for c in manifests[1:]] if isinstance(root, ImageIndex) else [])
        label = f"{where}: image {image.name}:{image.tag}"
        found = recorded_signatures(store, image.signatures, image.bundle_signatures)
        verified_count = 0
        for digest in needed:
            # Every signature we recorded must verify (we made them all: one that fails was altered),
            # in whichever format it is; and every signed manifest needs at least one.
            mine = [(fmt, att) for fmt, att in found if att.subject == digest]
            if not mine:
                raise SignatureError(f"{label} ({digest.short}): no signature of {digest} in {store.description}")
            for fmt, att in mine:
                try:
                    verified = fmt.verify(store, att, key, digest)
                except SignatureError as exc:
                    raise SignatureError(f"{label} ({digest.short}, {fmt.name} format): {exc}") from None
                if verified.docker_reference != image.identity:
                    raise SignatureError(f"{label} is signed as {verified.docker_reference!r}, "
                                         f"the bundle says {image.identity!r}")
                verified_count += 1
        report.images.append(ImageCheck(image.name, image.tag, image.digest, image.identity, verified_count,
                                        attachments=len(reader.attachments(image)),
                                        upstream=recheck_upstream(reader, image)))
    return report


def recheck_upstream(reader: BundleReader, image: BundleImage) -> str:
    """The upstream's signature of a mirrored image, checked again offline with the key or trusted
    root that travelled in the bundle (the signed manifest pins both, and the signature's digest).
    Raises SignatureError when it fails; returns what was checked, or why nothing was."""
    up = image.upstream
    if not up:
        return ""
    label = f"{reader.display}: image {image.name}:{image.tag}: upstream signature"
    if not all(isinstance(up.get(k), str) for k in ("signature", "trust", "format", "digest")):
        return "checked at bundle time (a bundle from an older airgap: the signature did not travel)"
    from airgap.sign.formats import signature_format
    from airgap.sign.keyless import KeylessTrust, available

    fmt = signature_format(str(up["format"]))
    trust_member = str(up["trust"])
    entry = next((f for f in reader.manifest.files if f.path == trust_member), None)
    if entry is None:
        raise SignatureError(f"{label}: its trust file {trust_member} is not in the bundle manifest")
    data = reader.read_member(trust_member, limit=limits.TRUST_FILE_BYTES)
    if hashlib.sha256(data).hexdigest() != entry.sha256:
        raise DigestMismatch(f"{reader.display}: {trust_member}", entry.sha256, hashlib.sha256(data).hexdigest())
    keyless = entry.kind == "trustedroot"
    if keyless and not available():
        return ("checked at bundle time; not re-checked here: keyless verification needs "
                "pip install 'airgap-oci[keyless]' (Python 3.10 or newer)")
    store = reader.store(image.name)
    digest = Digest.parse(str(up["digest"]))
    with tempfile.TemporaryDirectory(prefix="airgap-trust-") as tmp:
        path = Path(tmp) / Path(trust_member).name
        path.write_bytes(data)
        trust: PublicKey | KeylessTrust
        if keyless:
            trust = KeylessTrust(path, _opt(up, "policyIdentity"), _opt(up, "policyIdentityRegexp"),
                                 _opt(up, "policyIssuer"), _opt(up, "policyIssuerRegexp"))
        else:
            trust = load_public_key(path)
        manifest = store.fetch_manifest(str(up["signature"]))
        att = Attachment(digest, manifest.descriptor, classify(manifest), REFERRER)
        try:
            verified = fmt.verify(store, att, trust, digest)
        except SignatureError as exc:
            raise SignatureError(f"{label}: {exc}") from None
    return f"{fmt.name} signature re-checked: {verified.key}"


def _opt(record: dict, key: str) -> str | None:
    value = record.get(key)
    return value if isinstance(value, str) else None


def verify_content(reader: BundleReader, report: VerifyReport, progress: Progress | None = None,
                   concurrency: int = limits.VERIFY_CONCURRENCY) -> None:
    """Every blob every image needs, and every file, against its digest."""
    report.blobs_checked, report.bytes_checked = verify_blobs(reader, progress, concurrency)
    reader.verify_files()
    report.files_checked = len(reader.manifest.files)


def verify_blobs(reader: BundleReader, progress: Progress | None = None,
                 concurrency: int = limits.VERIFY_CONCURRENCY) -> tuple[int, int]:
    """Every blob the bundle holds for its images, against its digest: (count, bytes)."""
    progress = progress or Progress()
    needed = reader.check_complete()
    progress.phase("verifying", sum(d.size for d in needed.values()))

    def check(desc: Descriptor) -> None:
        h = hashlib.sha256()
        for chunk in reader.iter_member(reader.blob_member(desc.digest)):
            h.update(chunk)
            progress.advance(len(chunk))
        actual = "sha256:" + h.hexdigest()
        if actual != str(desc.digest):
            raise DigestMismatch(f"{reader.display}: blob {desc.digest}", str(desc.digest), actual)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(check, sorted(needed.values(), key=lambda d: d.size, reverse=True)))
    return len(needed), sum(d.size for d in needed.values())
