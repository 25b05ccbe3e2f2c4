"""Reads a bundle in place: members are byte ranges of the tar, streamed without unpacking.

A bundle is hostile until proved otherwise. Opening one reads its first member under a size cap,
checks the signature over those bytes (with a key), parses the manifest within limits and checks
every field (airgap.bundle.schema), and only then lists the tar, holding every member to the
format's rules (regular files, defined names, each once, a layout index that agrees with the
manifest). :meth:`BundleReader.check_complete`, :meth:`BundleReader.verify_files` and the copy
engine's verify-first pass check presence and content digests.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from airgap import limits, safejson
from airgap.bundle.format import LAYOUT_DIR, MANIFEST_NAME, SIGNATURE_NAME, BundleFile, BundleImage, BundleManifest
from airgap.bundle.schema import MAX_CHART_BYTES, MAX_MANIFEST_BYTES, MAX_VALUES
from airgap.bundle.writer import BLOCK, RECORD
from airgap.errors import AirgapError, BundleError, DigestMismatch, InputError
from airgap.model import Descriptor, Digest, parse_manifest
from airgap.model.digest import CHUNK
from airgap.model.filebody import FileRange
from airgap.model.attachment import REFERRER, Attachment
from airgap.model.manifest import ImageIndex, ImageManifest, Manifest
from airgap.names import relative_path_problem
from airgap.places.base import Store
from airgap.places.layout import REF_NAME
from airgap.sign.cosign import signature_tag
from airgap.sign.keys import PublicKey

MAX_BUNDLE_MANIFEST = MAX_MANIFEST_BYTES
MAX_SIGNATURE = limits.BUNDLE_SIGNATURE_BYTES
MAX_PART_HEADER = limits.PART_HEADER_BYTES
MAX_TAR_HEADER = limits.TAR_HEADER_BYTES
MAX_LAYOUT_INDEX = limits.LAYOUT_INDEX_BYTES
ZSTD_MAX_WINDOW = limits.ZSTD_MAX_WINDOW


@dataclass(frozen=True)
class Member:
    offset: int
    size: int
    path: Path  # the file (part) that holds it


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
PART_NAME = "airgap-part.json"  # first member of every part but the first of a split bundle
_BLOB_MEMBER = re.compile(r"^oci/blobs/(sha256/[a-f0-9]{64}|sha512/[a-f0-9]{128})$")
LAYOUT_MEMBERS = (f"{LAYOUT_DIR}/oci-layout", f"{LAYOUT_DIR}/index.json")
FORMAT_DIRS = frozenset({"oci", "oci/blobs", "oci/blobs/sha256", "oci/blobs/sha512", "chart", "crds", "tools"})
TOOLS_DIR = "tools"  # the offline installer of airgap itself (written by newer bundlers, extracted with tar)


def is_zstd(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == ZSTD_MAGIC


class _Refused(Exception):
    """Raised from inside tarfile's header parsing; turned into a BundleError naming the bundle."""


def _tar_error(exc: BaseException, where: str) -> BundleError:
    """One line for what tarfile (or the capped header reader below) raised while scanning a bundle."""
    if isinstance(exc, _Refused):
        return BundleError(f"{where}: {exc}")
    if isinstance(exc, EOFError):
        return BundleError(f"{where}: truncated (unexpected end of file)")
    return BundleError(f"{where}: not a readable tar ({exc}); the bundle is corrupt or truncated")


class _CappedInfo(tarfile.TarInfo):
    """tarfile reads a pax or GNU long-name header's whole payload into memory, whatever size the
    header claims: cap it before it is read."""

    def _proc_member(self, tf):
        if self.type in _EXTENDED and self.size > MAX_TAR_HEADER:
            raise _Refused(f"a {self.size}-byte extended tar header (pax or GNU long name) at byte "
                           f"{self.offset}, over the {MAX_TAR_HEADER}-byte limit")
        return super()._proc_member(tf)  # type: ignore[misc]  # tarfile's private hook: not in typeshed


_EXTENDED = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
             tarfile.GNUTYPE_LONGLINK)


@dataclass(frozen=True)
class Head:
    """The first member of a bundle (or part) and, for a bundle, the signature that follows it."""
    first: str
    data: bytes
    signature: bytes | None


def _read_head(fileobj: BinaryIO, where: str) -> Head:
    """Reads only the first two members' headers and bytes, each under its size cap, from a stream."""
    try:
        with tarfile.open(fileobj=fileobj, mode="r|", tarinfo=_CappedInfo) as tf:
            info = tf.next()
            if info is None:
                raise BundleError(f"{where}: empty file, not an airgap bundle")
            if info.name not in (MANIFEST_NAME, PART_NAME):
                raise BundleError(f"{where}: not an airgap bundle (first member is {info.name!r}, "
                                  f"expected {MANIFEST_NAME})")
            limit = MAX_BUNDLE_MANIFEST if info.name == MANIFEST_NAME else MAX_PART_HEADER
            if info.type not in _FILE_TYPES:
                raise BundleError(f"{where}: member {info.name} is not a regular file")
            if info.size > limit:
                raise BundleError(f"{where}: member {info.name} is {info.size} bytes, over the {limit}-byte limit; "
                                  "refused unread")
            data = _read_all(tf, info, where)
            signature = None
            second = tf.next() if info.name == MANIFEST_NAME else None
            if second is not None and second.name == SIGNATURE_NAME:
                if second.type not in _FILE_TYPES or second.size > MAX_SIGNATURE:
                    raise BundleError(f"{where}: member {SIGNATURE_NAME} is not a signature (over "
                                      f"{MAX_SIGNATURE} bytes, or not a regular file)")
                signature = _read_all(tf, second, where)
            return Head(info.name, data, signature)
    except (_Refused, tarfile.TarError, EOFError) as exc:
        raise _tar_error(exc, where) from None
    except Exception as exc:  # zstandard.ZstdError, without importing zstandard for plain bundles
        if exc.__class__.__name__ == "ZstdError":
            raise BundleError(f"{where}: corrupt or truncated zstd stream ({exc})") from None
        raise


def _read_all(tf: tarfile.TarFile, info: tarfile.TarInfo, where: str) -> bytes:
    fh = tf.extractfile(info)
    assert fh is not None
    data = fh.read(info.size)
    if len(data) != info.size:
        raise BundleError(f"{where}: truncated inside member {info.name}")
    return data


_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)


def read_file_head(path: Path, where: str | None = None) -> Head:
    """The head of a plain or zstd-compressed bundle file, decompressing only as far as it needs."""
    where = where or str(path)
    with open(path, "rb") as raw:
        if raw.read(4) != ZSTD_MAGIC:
            raw.seek(0)
            return _read_head(raw, where)
        raw.seek(0)
        import zstandard
        reader = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).stream_reader(raw, closefd=False)
        try:
            return _read_head(reader, where)
        finally:
            reader.close()


def parse_head(head: Head, where: str, key: PublicKey | None) -> BundleManifest:
    """Signature over the raw bytes first (with ``key``), then the bounded, typed parse."""
    if key is not None:
        if head.signature is None:
            from airgap.errors import SignatureError
            raise SignatureError(f"{where} is not signed (no {SIGNATURE_NAME}); make it with `airgap bundle --key`, "
                                 "or load it with --insecure-skip-verify")
        from airgap.sign.blob import verify_blob
        verify_blob(key, head.data, head.signature, f"bundle {where}")
    return BundleManifest.from_json(head.data, where)


def declared_size(manifest: BundleManifest, head: Head) -> int:
    """An upper bound on the uncompressed tar the manifest describes: each member's bytes, its
    headers (a pax record and a ustar block, at most MAX_TAR_HEADER each) and padding."""
    members = manifest.blob_count + len(manifest.files) + 4
    content = (len(head.data) + len(head.signature or b"") + MAX_LAYOUT_INDEX + 64 + manifest.blob_bytes
               + sum(f.size for f in manifest.files))
    return content + members * (2 * BLOCK + 2 * BLOCK) + 2 * MAX_TAR_HEADER + RECORD


def _decompress_capped(path: Path, dst: BinaryIO, cap: int, where: str) -> None:
    import zstandard
    written = 0
    with open(path, "rb") as src:
        reader = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).stream_reader(src, closefd=False)
        try:
            while True:
                chunk = reader.read(CHUNK)
                if not chunk:
                    break
                written += len(chunk)
                if written > cap:
                    raise BundleError(f"{where}: decompresses to more than the {cap} bytes its manifest declares; "
                                      "refused (a damaged bundle, or a decompression bomb)")
                dst.write(chunk)
        except zstandard.ZstdError as exc:
            raise BundleError(f"{where}: corrupt or truncated zstd stream ({exc})") from None
        finally:
            reader.close()


@contextmanager
def open_bundle(path: Path | list[Path], scratch: Path | None = None, progress=None,
                key: PublicKey | None = None) -> Iterator[BundleReader]:
    """A reader for a plain or zstd-compressed bundle; with ``key``, nothing is parsed before the
    bundle signature verifies.

    A zstd stream cannot be read at random offsets, so a compressed bundle is decompressed into a
    scratch file (next to the bundle unless ``scratch`` says where) that is removed afterwards; only
    after its head (manifest and signature) has been streamed out and checked, and never to more
    bytes than that manifest declares.
    """
    if isinstance(path, list) and len(path) == 1:
        path = path[0]
    if isinstance(path, list):
        yield BundleReader([Path(p) for p in path], key=key)  # split bundles are plain tars
        return
    path = Path(path)
    if not path.is_file():
        raise InputError(f"bundle {path} does not exist")
    if not is_zstd(path):
        yield BundleReader(path, key=key)
        return
    import tempfile

    head = read_file_head(path)
    if head.first != MANIFEST_NAME:
        raise BundleError(f"{path}: a part of a split bundle is never compressed; give the first part")
    manifest = parse_head(head, str(path), key)
    directory = Path(scratch) if scratch else path.parent
    cap = declared_size(manifest, head)
    free = shutil.disk_usage(directory).free
    if cap > free:  # checked before writing a byte; under --insecure-skip-verify the declaration is anyone's
        raise BundleError(f"{path}: its manifest declares up to {cap} bytes uncompressed, {directory} has {free} "
                          "free; give --scratch-dir on a larger file system")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tar", dir=directory)
    try:
        if progress:
            progress.note(f"decompressing {path.name} into {directory} (zstd bundles need that scratch space)")
        with os.fdopen(fd, "wb") as dst:
            _decompress_capped(path, dst, cap, str(path))
        yield BundleReader(Path(tmp), display=path, key=key)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _scan_tar(path: Path, where: str, allowed: Callable[[str, int], str | None], max_members: int,
              seen: dict[str, Path]) -> list[tuple[str, Member]]:
    """Every member of a tar as a byte range, checked as it is listed: regular files only (and the
    directories the format defines), each name allowed by ``allowed(name, position)``, and listed
    once in all the files ``seen`` records (a part's own header excepted)."""
    size = path.stat().st_size
    out: list[tuple[str, Member]] = []
    try:
        with tarfile.open(path, mode="r:", tarinfo=_CappedInfo) as tf:
            while True:
                info = tf.next()
                if info is None:
                    break
                # tarfile keeps every header it reads (in .members, not in typeshed); a tar of tiny members
                # would fill memory.
                tf.members.clear()  # type: ignore[attr-defined]
                if len(out) >= max_members:
                    raise BundleError(f"{where}: more than {max_members} members, more than its manifest accounts "
                                      "for; refused")
                if info.isdir():
                    if info.name not in FORMAT_DIRS and not info.name.startswith(TOOLS_DIR + "/"):
                        raise BundleError(f"{where}: member {info.name!r} is a directory the bundle format does "
                                          "not define; refused")
                    continue
                if info.type not in _FILE_TYPES:
                    raise BundleError(f"{where}: member {info.name!r} is a {_TYPE_NAMES.get(info.type, 'special file')}"
                                      "; a bundle holds only regular files")
                if info.name in seen and info.name != PART_NAME:
                    other = "" if seen[info.name] == path else f" (also in {seen[info.name]})"
                    raise BundleError(f"{where}: member {info.name} appears twice{other}; tar would extract the "
                                      "last copy, so the bundle is ambiguous and refused")
                seen[info.name] = path
                problem = allowed(info.name, len(out))
                if problem:
                    raise BundleError(f"{where}: member {info.name!r} {problem}; refused")
                if info.offset_data + info.size > size:
                    raise BundleError(f"{where}: truncated: member {info.name} ends at byte "
                                      f"{info.offset_data + info.size}, the file has {size}")
                out.append((info.name, Member(info.offset_data, info.size, path)))
    except (_Refused, tarfile.TarError, EOFError) as exc:
        raise _tar_error(exc, where) from None
    if not out:
        raise BundleError(f"{where}: empty file, not an airgap bundle")
    return out


_TYPE_NAMES = {tarfile.SYMTYPE: "symbolic link", tarfile.LNKTYPE: "hard link", tarfile.CHRTYPE: "character device",
               tarfile.BLKTYPE: "block device", tarfile.FIFOTYPE: "FIFO", tarfile.CONTTYPE: "contiguous file",
               tarfile.GNUTYPE_SPARSE: "sparse file"}


def _part_index(data: bytes, path: Path) -> int:
    try:
        doc = safejson.loads(data, max_bytes=MAX_PART_HEADER, max_depth=2, max_tokens=64)
        index = doc["index"]
        if isinstance(index, bool) or not isinstance(index, int) or not 2 <= index <= 1000:
            raise ValueError
        return index
    except (ValueError, KeyError, TypeError):
        raise BundleError(f"{path}: malformed part header ({PART_NAME} needs an integer index from 2)") from None


class BundleReader:
    """One bundle file, or the parts of a split bundle given in any order.

    Opening reads, in this order: each file's first member (under a size cap); with ``key``, the
    bundle signature over the manifest's raw bytes; the manifest, parsed within limits and checked
    field by field; the parts' checksums; only then the tar listings, where every member must be a
    regular file with a name the format defines, listed once; and the OCI layout's index, which must
    say what the signed manifest says.
    """

    def __init__(self, path: Path | list[Path], display: Path | None = None, key: PublicKey | None = None):
        paths = [Path(p) for p in (path if isinstance(path, list) else [path])]
        for p in paths:
            if not p.is_file():
                raise InputError(f"bundle {p} does not exist")
            if is_zstd(p):
                raise BundleError(f"{p} is zstd-compressed: give it alone (the parts of a split bundle are plain tars)")
        self.members: dict[str, Member] = {}
        self._ref_names: dict[str, tuple[str, int]] | None = None
        main, main_head = None, None
        parts: dict[int, Path] = {}
        for p in paths:
            where = str(display if display and len(paths) == 1 else p)
            head = read_file_head(p, where)
            if head.first == MANIFEST_NAME:
                if main is not None:
                    raise BundleError(f"{main} and {p} are both the first part of a bundle")
                main, main_head = p, head
            else:
                index = _part_index(head.data, p)
                if index in parts:
                    raise BundleError(f"{parts[index]} and {p} are both part {index}: give each part once")
                parts[index] = p
        if main is None or main_head is None:
            raise BundleError(f"none of {', '.join(map(str, paths))} is the first part of a bundle "
                              f"(the one holding {MANIFEST_NAME})")
        self.path = main
        self.paths = paths
        self.display = display or main
        where = str(self.display)
        self.manifest_bytes = main_head.data
        self.signature = main_head.signature
        self.manifest = parse_head(main_head, where, key)
        self._check_parts(parts)
        self._scan(main, where, parts)
        self._check_layout(where)

    def _scan(self, main: Path, where: str, parts: dict[int, Path]) -> None:
        """Lists every member of every file: names as the format defines them, each exactly once."""
        m = self.manifest
        files = {f.path for f in m.files}
        budget = m.blob_count + len(m.files) + limits.EXTRA_MEMBERS

        def in_main(name: str, position: int) -> str | None:
            if position == 0:
                return None if name == MANIFEST_NAME else f"comes first, where {MANIFEST_NAME} belongs"
            if name == SIGNATURE_NAME:
                return None if position == 1 else "is not the second member, where the format puts it"
            if name in LAYOUT_MEMBERS or name in files or _BLOB_MEMBER.match(name):
                return None
            if name.startswith(TOOLS_DIR + "/") and not relative_path_problem(name):
                return None
            if name.split("/", 1)[0] in ("chart", "crds"):
                return "is not listed in the bundle manifest"
            return "is not a member the bundle format defines"

        def in_part(name: str, position: int) -> str | None:
            if position == 0:
                return None if name == PART_NAME else f"comes first, where {PART_NAME} belongs"
            return None if _BLOB_MEMBER.match(name) else "is not a blob (a part holds only oci/blobs/...)"

        seen: dict[str, Path] = {}
        for path, allowed in [(main, in_main), *((p, in_part) for p in parts.values())]:
            shown = where if path == main else str(path)
            for name, member in _scan_tar(path, shown, allowed, budget, seen):
                if name != PART_NAME:
                    self.members[name] = member
        for f in m.files:
            if f.path not in self.members:
                raise BundleError(f"{where}: member {f.path} ({f.kind} file in the bundle manifest) is missing")
            if self.members[f.path].size != f.size:
                raise BundleError(f"{where}: member {f.path} is {self.members[f.path].size} bytes, the bundle "
                                  f"manifest says {f.size}")

    def _check_layout(self, where: str) -> None:
        """oci-layout and oci/index.json say exactly what the signed manifest says: an OCI tool shown
        this tar sees the same images, tags and digests that were verified."""
        layout_name, index_name = LAYOUT_MEMBERS
        for name in LAYOUT_MEMBERS:
            if name not in self.members:
                raise BundleError(f"{where}: member {name} is missing")
        try:
            layout = safejson.loads(self.read_member(layout_name, MAX_PART_HEADER), max_bytes=MAX_PART_HEADER,
                                    max_depth=2, max_tokens=64)
        except ValueError:
            layout = None
        if not isinstance(layout, dict) or layout.get("imageLayoutVersion") != "1.0.0":
            raise BundleError(f"{where}: member {layout_name} is not {{\"imageLayoutVersion\": \"1.0.0\"}}")
        try:
            index = safejson.loads(self.read_member(index_name, MAX_LAYOUT_INDEX), max_bytes=MAX_LAYOUT_INDEX,
                                   max_depth=8, max_tokens=MAX_VALUES)
        except ValueError as exc:
            raise BundleError(f"{where}: member {index_name} is not a readable image index ({exc})") from None
        entries = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(entries, list):
            raise BundleError(f"{where}: member {index_name} has no manifests: list")
        expected = self.ref_names()
        found: dict[str, tuple[str, int]] = {}
        for n, e in enumerate(entries):
            annotations = e.get("annotations") if isinstance(e, dict) else None
            ref = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
            ref = ref if isinstance(ref, str) else None
            if ref is None or ref in found:
                raise BundleError(f"{where}: member {index_name}: manifests[{n}] has " +
                                  ("no ref.name annotation" if ref is None else f"ref.name {ref!r} twice"))
            found[ref] = (e.get("digest"), e.get("size"))
        for ref in sorted(set(expected) | set(found)):
            if expected.get(ref) != found.get(ref):
                want = f"{expected[ref][0]} ({expected[ref][1]} bytes)" if ref in expected else "no such image"
                got = f"{found[ref][0]} ({found[ref][1]} bytes)" if ref in found else "nothing"
                raise BundleError(f"{where}: member {index_name} disagrees with the signed bundle manifest on "
                                  f"{ref}: it says {got}, the manifest says {want}")
    def _check_parts(self, parts: dict[int, Path]) -> None:
        """Every part the manifest lists is here, complete, with its checksum (named precisely if not)."""
        listed = {p["index"]: p for p in self.manifest.parts}
        extra = set(parts) - set(listed)
        if extra:
            raise BundleError(f"{', '.join(str(parts[i]) for i in sorted(extra))}: not a part of {self.display}")
        total = len(listed) + 1
        missing = [f"part {i} of {total} ({p['name']})" for i, p in sorted(listed.items()) if i not in parts]
        if missing:
            raise BundleError(f"{self.display}: missing {', '.join(missing)}; give every part to the command")

        def check(item: tuple[int, dict]) -> str | None:
            i, entry = item
            path = parts[i]
            if path.stat().st_size != entry["size"]:
                return f"part {i} of {total} ({path}) is {path.stat().st_size} bytes, expected {entry['size']}"
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(CHUNK), b""):
                    h.update(chunk)
            if h.hexdigest() != entry["sha256"]:
                return f"part {i} of {total} ({path}) is damaged: its sha256 does not match the bundle manifest"
            return None

        if listed:
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(2) as pool:
                problems = [p for p in pool.map(check, sorted(listed.items())) if p]
            if problems:
                raise BundleError("; ".join(problems))

    def ref_names(self) -> dict[str, tuple[str, int]]:
        """``<image>:<tag>`` -> (digest, size) of every tagged manifest, as the signed manifest says:
        each image under its tag, each signature under its cosign tag. Built once: every image's
        scoped store asks for it (building it per image would cost the square of the image count)."""
        if self._ref_names is None:
            self._ref_names = self._build_ref_names()
        return self._ref_names

    def _build_ref_names(self) -> dict[str, tuple[str, int]]:
        out: dict[str, tuple[str, int]] = {}
        for i in self.manifest.images:
            out[i.ref_name] = (i.digest, i.size)
            for s in i.signatures:  # legacy only: Sigstore-bundle signatures (bundle_signatures) have no tag
                out[f"{i.name}:{signature_tag(s['signed'])}"] = (s["digest"], s["size"])
            for a in i.attachments:  # upstream cosign .sig/.att/.sbom tags keep their tags
                if a.get("tag"):
                    out[f"{i.name}:{a['tag']}"] = (a["digest"], a["size"])
        return out

    def attachments(self, image: BundleImage) -> list[tuple[Attachment, ImageManifest]]:
        """The upstream attachments the signed manifest lists for ``image``, each read and checked before
        anything uses it: its digest and size, an image manifest, a subject that is the image, one of
        its platform manifests or an attachment listed before it, the same subject in the manifest
        itself (a referrer), the same artifact type. Nothing else in the bundle is an attachment."""
        if not image.attachments:
            return []
        # load, verify and check_complete all ask: each manifest is read and checked once
        cache: dict[str, list[tuple[Attachment, ImageManifest]]] = self.__dict__.setdefault("_attachments", {})
        if image.name not in cache:
            cache[image.name] = self._read_attachments(image)
        return cache[image.name]

    def _read_attachments(self, image: BundleImage) -> list[tuple[Attachment, ImageManifest]]:
        store = self.store()
        subjects = {m.digest for m in self.image_manifests(image)}
        out: list[tuple[Attachment, ImageManifest]] = []
        for e in image.attachments:
            where = f"{self.display}: image {image.name}:{image.tag}: attachment {e['digest'][:19]}"
            subject = Digest.parse(e["subject"])
            if subject not in subjects:
                raise BundleError(f"{where}: its subject {subject.short} is not the image, one of its platform "
                                  "manifests or an attachment listed before it; refused")
            try:
                manifest = store.fetch_manifest(e["digest"])
            except AirgapError as exc:  # missing, damaged, not a manifest: named as this attachment
                raise BundleError(f"{where}: {exc}") from None
            if not isinstance(manifest, ImageManifest) or manifest.media_type != e["mediaType"] \
                    or len(manifest.data) != e["size"]:
                raise BundleError(f"{where}: is {len(manifest.data)} bytes of {manifest.media_type}, the bundle "
                                  f"manifest says {e['size']} bytes of {e['mediaType']}")
            if e["foundBy"] == REFERRER:
                named = manifest.subject.digest if manifest.subject is not None else None
                if named != subject:
                    raise BundleError(f"{where}: its manifest's subject is {named.short if named else 'absent'}, "
                                      f"the bundle manifest says {subject.short}; refused")
                att = Attachment.of(subject, manifest)
            else:
                att = Attachment.of(subject, manifest, e["tag"])
            if att.artifact_type != e["artifactType"]:
                raise BundleError(f"{where}: its manifest is a {att.artifact_type}, the bundle manifest says "
                                  f"{e['artifactType']}")
            subjects.add(manifest.digest)
            out.append((att, manifest))
        return out

    def blob_member(self, digest: Digest) -> str:
        return f"{LAYOUT_DIR}/blobs/{digest.algorithm}/{digest.hex}"

    def has_blob(self, desc: Descriptor) -> bool:
        m = self.members.get(self.blob_member(desc.digest))
        return m is not None and m.size == desc.size

    def read_member(self, name: str, limit: int = limits.MEMBER_BYTES) -> bytes:
        m = self.members.get(name)
        if m is None:
            raise BundleError(f"{self.display}: member {name} is missing")
        if m.size > limit:
            raise BundleError(f"{self.display}: member {name} is implausibly large ({m.size} bytes)")
        with open(m.path, "rb") as fh:
            fh.seek(m.offset)
            return fh.read(m.size)

    def iter_member(self, name: str) -> Iterator[bytes]:
        m = self.members.get(name)
        if m is None:
            raise BundleError(f"{self.display}: member {name} is missing")
        with open(m.path, "rb") as fh:
            fh.seek(m.offset)
            left = m.size
            while left:
                chunk = fh.read(min(CHUNK, left))
                if not chunk:
                    raise BundleError(f"{self.display}: truncated inside member {name}")
                left -= len(chunk)
                yield chunk

    def store(self, image: str = "") -> BundleStore:
        """The bundle as a place; with ``image`` (a name), scoped to that image's tags and attachments."""
        return BundleStore(self, image)

    def image_manifests(self, image: BundleImage) -> list[Manifest]:
        """The image's root manifest/index and its children, each checked against its digest."""
        store = self.store()
        root = store.fetch_manifest(image.digest)
        if len(root.data) != image.size or root.media_type != image.media_type:
            raise BundleError(f"{self.display}: image {image.name}:{image.tag}: manifest {root.digest.short} is "
                              f"{len(root.data)} bytes of {root.media_type}, the bundle manifest says {image.size} "
                              f"bytes of {image.media_type}")
        out: list[Manifest] = [root]
        if isinstance(root, ImageIndex):
            for child in root.manifests:
                out.append(store.fetch_manifest(str(child.digest)))
        return out

    def check_complete(self) -> dict[Digest, Descriptor]:
        """Every blob every image needs is present at its full size; returns them (deduplicated)."""
        needed: dict[Digest, Descriptor] = {}
        for image in self.manifest.images:
            for m in self.image_manifests(image):
                if isinstance(m, ImageIndex):
                    continue
                for blob in m.blobs():
                    member = self.members.get(self.blob_member(blob.digest))
                    if member is None and self.manifest.base:
                        continue  # a delta: the target must hold it already (checked before pushing)
                    if member is None:
                        raise BundleError(f"{self.display}: image {image.name}:{image.tag} needs blob "
                                          f"{blob.digest} which the bundle does not contain")
                    if member.size != blob.size:
                        raise BundleError(f"{self.display}: blob {blob.digest} of image {image.name}:{image.tag} "
                                          f"is {member.size} bytes, its manifest says {blob.size}")
                    needed[blob.digest] = blob
            for _, att in self.attachments(image):  # what the manifest lists must be here too
                for blob in att.blobs():
                    member = self.members.get(self.blob_member(blob.digest))
                    if member is None and self.manifest.base:
                        continue
                    if member is None or member.size != blob.size:
                        raise BundleError(f"{self.display}: attachment {att.digest.short} of image {image.name}:"
                                          f"{image.tag} needs blob {blob.digest} ({blob.size} bytes), which the "
                                          "bundle does not contain" + (" at that size" if member else ""))
                    needed[blob.digest] = blob
        return needed

    def verify_files(self) -> None:
        for f in self.manifest.files:
            self.verify_file(f)

    def verify_file(self, f: BundleFile) -> None:
        h = hashlib.sha256()
        for chunk in self.iter_member(f.path):
            h.update(chunk)
        if h.hexdigest() != f.sha256:
            raise DigestMismatch(f"{self.display}: {f.kind} file {f.path}", f"sha256:{f.sha256}",
                                 f"sha256:{h.hexdigest()}")
        if f.kind == "chart":
            from airgap.chartoci import chart_metadata
            chart_metadata(self.read_member(f.path, MAX_CHART_BYTES), f"{self.display}: {f.path}", f)

    def extract_file(self, f: BundleFile, dest: Path) -> Path:
        from airgap.fsutil import atomic_write
        self.verify_file(f)
        atomic_write(dest, self.iter_member(f.path))
        return dest


class BundleStore(Store):
    """The bundle's OCI layout as a read-only place; every image's repository shares it. Scoped to
    one image (``repository``), its tags are that image's ref names in the signed bundle manifest,
    so attachments are found through the same Store calls as anywhere else."""

    def __init__(self, reader: BundleReader, repository: str = ""):
        self.reader = reader
        self.repository = repository
        self.description = f"bundle {reader.display}"
        self._tags: dict[str, tuple[str, int]] | None = None

    def resolve_tag(self, tag: str) -> Digest | None:
        if not self.repository:
            return None
        if self._tags is None:
            self._tags = self.reader.ref_names()
        found = self._tags.get(f"{self.repository}:{tag}")
        return Digest.parse(found[0]) if found else None

    def manifest_exists(self, digest: Digest) -> bool:
        return self.reader.blob_member(digest) in self.reader.members

    def referrers(self, subject: Digest) -> list[Descriptor]:
        """The referrers of ``subject`` the signed manifest lists for this image, and nothing else."""
        image = next((i for i in self.reader.manifest.images if i.name == self.repository), None)
        if image is None:
            return []
        return [Descriptor.from_json({"mediaType": a["mediaType"], "digest": a["digest"], "size": a["size"],
                                      "artifactType": a["artifactType"]})
                for a in image.attachments if a["foundBy"] == REFERRER and a["subject"] == str(subject)]

    @property
    def place_key(self) -> str:
        return f"bundle:{os.path.abspath(self.reader.path)}"

    def fetch_manifest(self, ref: str) -> Manifest:
        if not ref.startswith("sha256:"):
            image = next((i for i in self.reader.manifest.images if i.ref_name == ref or i.name == ref), None)
            if image is None:
                raise BundleError(f"{self.description}: no image {ref!r}")
            ref = image.digest
        digest = Digest.parse(ref)
        data = self.reader.read_member(self.reader.blob_member(digest), limit=limits.MANIFEST_BYTES)
        manifest = parse_manifest(data, None, where=f"{self.description} manifest {digest.short}")
        if manifest.digest != digest:
            raise DigestMismatch(f"{self.description}: manifest {digest.short}", str(digest), str(manifest.digest))
        return manifest

    @contextmanager
    def open_blob(self, desc: Descriptor) -> Iterator[Iterator[bytes]]:
        yield self.reader.iter_member(self.reader.blob_member(desc.digest))

    def blob_file(self, desc: Descriptor) -> FileRange | None:
        m = self.reader.members.get(self.reader.blob_member(desc.digest))
        return FileRange(m.path, m.offset, m.size) if m is not None and m.size == desc.size else None

    def blob_exists(self, desc: Descriptor) -> bool:
        return self.reader.has_blob(desc)


def read_head(path: Path) -> tuple[bytes, BundleManifest, bytes | None]:
    """The manifest and, when signed, its signature: the first two members only, so it is cheap on a
    bundle of any size, compressed or split (the first part). Validated like any bundle manifest."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"bundle {path} does not exist")
    head = read_file_head(path)
    if head.first != MANIFEST_NAME:
        raise BundleError(f"{path}: not an airgap bundle (first member is not {MANIFEST_NAME})")
    return head.data, BundleManifest.from_json(head.data, str(path)), head.signature

