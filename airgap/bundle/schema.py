"""The bundle manifest's shape, checked field by field before anything uses it.

Whatever a bundle says reaches registry URLs, tar member lookups and file paths, so every field gets
a strict type, a size limit and the rules of :mod:`airgap.names`; an error names the field's path
(``images[2].tag``). Unknown keys are ignored, as docs/bundle-format.md promises, but still count
against the document's size, depth and value limits (airgap.safejson), which apply first.
"""

from __future__ import annotations

import builtins
import re
from typing import Any, Callable

from airgap import limits, names, safejson
from airgap.errors import BundleError
from airgap.model.mediatypes import INDEX_TYPES, MANIFEST_TYPES

MAX_MANIFEST_BYTES = limits.BUNDLE_MANIFEST_BYTES
MAX_DEPTH = limits.BUNDLE_MANIFEST_DEPTH
MAX_VALUES = limits.BUNDLE_MANIFEST_VALUES
MAX_IMAGES = limits.BUNDLE_IMAGES
MAX_FILES = limits.BUNDLE_FILES
MAX_PARTS = limits.BUNDLE_PARTS
MAX_SIGNATURES = limits.BUNDLE_SIGNATURES
MAX_PLATFORMS = limits.BUNDLE_PLATFORMS
MAX_TEXT = limits.BUNDLE_TEXT
MAX_SIZE = limits.BUNDLE_SIZE
MAX_CHART_BYTES = limits.CHART_BYTES
MAX_ROOT_MANIFEST = limits.MANIFEST_BYTES
MAX_ATTACHMENTS = limits.MAX_ATTACHMENTS

Rule = Callable[[str], "str | None"]


class _Doc:
    """Typed reads from one JSON document; every failure names the document and the field path."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, path: str, problem: str) -> BundleError:
        return BundleError(f"{self.where}: bundle manifest: {path} {problem}")

    def obj(self, value: Any, path: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(path, f"must be an object, not {_kind(value)}")
        return value

    def list(self, value: Any, path: str, limit: int) -> list:
        if not isinstance(value, list):
            raise self.fail(path, f"must be a list, not {_kind(value)}")
        if len(value) > limit:
            raise self.fail(path, f"has {len(value)} entries, over the limit of {limit}")
        return value

    def str(self, value: Any, path: str, rule: Rule | None = None, limit: int = MAX_TEXT) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"must be a string, not {_kind(value)}")
        if len(value) > limit:
            raise self.fail(path, f"is {len(value)} characters, over the limit of {limit}")
        problem = rule(value) if rule else None
        if problem:
            raise self.fail(path, f"{_show(value)} {problem}")
        return value

    # After `def str` above, a bare `str` in this class's annotations would name that method.
    def int(self, value: Any, path: builtins.str, low: int = 0, high: int = MAX_SIZE) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"must be an integer, not {_kind(value)}")
        if not low <= value <= high:
            raise self.fail(path, f"is {value}, outside {low}..{high}")
        return value

    def field(self, doc: dict, key: builtins.str, path: builtins.str, read: Callable[[Any, builtins.str], Any],
              default: Any = ...) -> Any:
        if key not in doc or (doc[key] is None and default is not ...):
            if default is ...:
                raise self.fail(f"{path}.{key}" if path else key, "is missing")
            return default
        return read(doc[key], f"{path}.{key}" if path else key)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _show(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


def load_document(data: bytes, where: str) -> dict:
    """The manifest's bytes as a dict, refused before parsing when over a size, depth or count limit."""
    try:
        doc = safejson.loads(data, max_bytes=MAX_MANIFEST_BYTES, max_depth=MAX_DEPTH, max_tokens=MAX_VALUES)
    except safejson.JSONLimitError as exc:
        raise BundleError(f"{where}: bundle manifest refused: {exc}") from None
    except ValueError as exc:
        raise BundleError(f"{where}: bundle manifest is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise BundleError(f"{where}: bundle manifest must be a JSON object, not {_kind(doc)}")
    return doc


def check_manifest(doc: dict, where: str, supported_version: int) -> dict:
    """The manifest's fields, typed and validated, in the snake_case the dataclasses use."""
    d = _Doc(where)
    if doc.get("kind") != "AirgapBundle":
        raise BundleError(f"{where}: not an airgap bundle (first member is not an airgap manifest)")
    version = d.field(doc, "formatVersion", "", lambda v, p: d.int(v, p, 0, 1 << 31))
    if version != supported_version:
        raise BundleError(f"{where}: bundle format version {version} is not supported by this airgap "
                          f"(supports {supported_version}); use the airgap release that wrote it")
    blobs = d.field(doc, "blobs", "", d.obj)
    out: dict[str, Any] = {
        "format_version": version,
        "release": d.field(doc, "release", "", lambda v, p: d.str(v, p, names.tag_problem)),
        "created": d.field(doc, "created", "", lambda v, p: d.str(v, p, limit=64)),
        "tool": d.field(doc, "tool", "", d.str, ""),
        "signer": d.field(doc, "signer", "", d.str, ""),
        "blob_count": d.field(blobs, "count", "blobs", d.int),
        "blob_bytes": d.field(blobs, "bytes", "blobs", d.int),
    }
    if d.field(doc, "layout", "", d.str, "oci") != "oci":
        raise d.fail("layout", "must be \"oci\"")
    images = d.field(doc, "images", "", lambda v, p: d.list(v, p, MAX_IMAGES))
    out["images"] = [_image(d, item, f"images[{n}]") for n, item in enumerate(images)]
    _check_images_together(d, out["images"])
    files = d.field(doc, "files", "", lambda v, p: d.list(v, p, MAX_FILES), [])
    out["files"] = [_file(d, item, f"files[{n}]") for n, item in enumerate(files)]
    seen: dict[str, int] = {}
    for n, f in enumerate(out["files"]):
        if f["path"] in seen:
            raise d.fail(f"files[{n}].path", f"{f['path']!r} is already files[{seen[f['path']]}]")
        seen[f["path"]] = n
    if sum(1 for f in out["files"] if f["kind"] == "chart") > 1:
        raise d.fail("files", "lists more than one chart")
    referenced = d.field(doc, "referenced", "", lambda v, p: d.list(v, p, MAX_VALUES), [])
    out["referenced"] = [d.str(r, f"referenced[{n}]", names.digest_problem, 140) for n, r in enumerate(referenced)]
    out["base"] = d.field(doc, "base", "", _base(d), None)
    parts = d.field(doc, "parts", "", lambda v, p: d.list(v, p, MAX_PARTS), [])
    out["parts"] = [_part(d, item, f"parts[{n}]") for n, item in enumerate(parts)]
    indexes = sorted(p["index"] for p in out["parts"])
    if indexes != list(range(2, len(indexes) + 2)):
        raise d.fail("parts", f"are numbered {indexes}, expected 2..{len(indexes) + 1} (part 1 holds the manifest)")
    if len({p["name"] for p in out["parts"]}) != len(out["parts"]):
        raise d.fail("parts", "name the same file twice")
    return out


def _image(d: _Doc, value: Any, path: str) -> dict:
    i = d.obj(value, path)
    media_types = MANIFEST_TYPES | INDEX_TYPES

    def media(v: Any, p: str) -> str:
        return d.str(v, p, lambda s: None if s in media_types else "is not an image manifest or index media type")

    signatures = d.field(i, "signatures", path, lambda v, p: d.list(v, p, MAX_SIGNATURES), [])
    bundle_sigs = d.field(i, "bundleSignatures", path, lambda v, p: d.list(v, p, MAX_SIGNATURES), [])
    platforms = d.field(i, "platforms", path, lambda v, p: d.list(v, p, MAX_PLATFORMS), [])
    upstream = d.field(i, "upstream", path, d.obj, None)
    if upstream is not None:  # a record of a check made at bundle time: shown, never acted on
        upstream = {d.str(k, f"{path}.upstream", limit=64): d.str(v, f"{path}.upstream.{k}") if isinstance(v, str)
                    else v for k, v in upstream.items() if isinstance(v, (str, int, bool)) or v is None}
    return {
        "name": d.field(i, "name", path, lambda v, p: d.str(v, p, names.repository_problem)),
        "source": d.field(i, "source", path, d.str, ""),
        "tag": d.field(i, "tag", path, lambda v, p: d.str(v, p, names.tag_problem)),
        "digest": d.field(i, "digest", path, lambda v, p: d.str(v, p, names.digest_problem, 140)),
        "media_type": d.field(i, "mediaType", path, media),
        "size": d.field(i, "size", path, lambda v, p: d.int(v, p, 1, MAX_ROOT_MANIFEST)),
        "platforms": [d.str(v, f"{path}.platforms[{n}]", names.platform_problem, 100)
                      for n, v in enumerate(platforms)],
        "values": d.field(i, "values", path, lambda v, p: d.str(v, p, names.values_path_problem, 256), None),
        "blob_bytes": d.field(i, "blobBytes", path, d.int, 0),
        "identity": d.field(i, "identity", path,
                            lambda v, p: d.str(v, p, lambda s: names.identity_problem(s) if s else None), ""),
        "signatures": [_signature(d, s, f"{path}.signatures[{n}]") for n, s in enumerate(signatures)],
        "upstream": upstream,
        # absent in bundles made before attachments travelled: nothing but our signatures then
        "attachments": _attachments(d, i, path, signatures),
        "bundle_signatures": [_signature(d, s, f"{path}.bundleSignatures[{n}]") for n, s in enumerate(bundle_sigs)],
    }


_ARTIFACT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
                            r"(;[ -~]{0,200})?$")


def _attachments(d: _Doc, image: dict, path: str, signatures: list) -> list[dict]:
    """``images[].attachments``: each one an image manifest by digest, with its subject and how it is
    found at a target; digests and cosign tags once each, never a tag one of our signatures uses."""
    from airgap.model.attachment import COSIGN_SUFFIXES, COSIGN_TAG, REFERRER, cosign_tag

    items = d.field(image, "attachments", path, lambda v, p: d.list(v, p, MAX_ATTACHMENTS), [])
    digest = lambda v, p: d.str(v, p, names.digest_problem, 140)  # noqa: E731
    taken = {cosign_tag(s["signed"]) for s in signatures if isinstance(s, dict) and isinstance(s.get("signed"), str)
             and not names.digest_problem(s["signed"])}
    out: list[dict] = []
    seen: set[str] = set()
    for n, value in enumerate(items):
        where = f"{path}.attachments[{n}]"
        a = d.obj(value, where)
        entry = {
            "digest": d.field(a, "digest", where, digest),
            "subject": d.field(a, "subject", where, digest),
            "artifactType": d.field(a, "artifactType", where, lambda v, p: d.str(
                v, p, lambda t: None if _ARTIFACT_TYPE.match(t) else "is not a media type", 255)),
            "mediaType": d.field(a, "mediaType", where, lambda v, p: d.str(
                v, p, lambda t: None if t in MANIFEST_TYPES else "is not an image manifest media type")),
            "size": d.field(a, "size", where, lambda v, p: d.int(v, p, 1, MAX_ROOT_MANIFEST)),
            "foundBy": d.field(a, "foundBy", where, lambda v, p: d.str(
                v, p, lambda f: None if f in (REFERRER, COSIGN_TAG) else f"must be {REFERRER} or {COSIGN_TAG}", 32)),
            "blobBytes": d.field(a, "blobBytes", where, d.int, 0),
        }
        if entry["digest"] in seen:
            raise d.fail(f"{where}.digest", f"{entry['digest']} is listed twice")
        seen.add(entry["digest"])
        if entry["foundBy"] == COSIGN_TAG:
            tag = d.field(a, "tag", where, lambda v, p: d.str(v, p, limit=140))
            if tag not in {cosign_tag(entry["subject"], s) for s in COSIGN_SUFFIXES}:
                raise d.fail(f"{where}.tag", f"{_show(tag)} is not a cosign tag of its subject")
            if tag in taken:
                raise d.fail(f"{where}.tag", f"{tag!r} is already used (by one of the image's signatures or "
                             "another attachment)")
            taken.add(tag)
            entry["tag"] = tag
        elif "tag" in a and a["tag"] is not None:
            raise d.fail(f"{where}.tag", "is only for cosign-tag attachments (a referrer is found by its subject)")
        out.append(entry)
    return out


def _signature(d: _Doc, value: Any, path: str) -> dict:
    s = d.obj(value, path)
    digest = lambda v, p: d.str(v, p, names.digest_problem, 140)  # noqa: E731
    # Unknown keys a newer writer adds pass through when they are plain scalars (short strings).
    extra = {k: v for k, v in s.items() if isinstance(v, (bool, int)) or (isinstance(v, str) and len(v) <= MAX_TEXT)}
    return {**extra, "signed": d.field(s, "signed", path, digest), "digest": d.field(s, "digest", path, digest),
            "size": d.field(s, "size", path, lambda v, p: d.int(v, p, 1, MAX_ROOT_MANIFEST))}


def _check_images_together(d: _Doc, images: list[dict]) -> None:
    """What IMAGES.md refuses across entries: one entry per name, values paths that do not overlap."""
    by_name: dict[str, int] = {}
    for n, i in enumerate(images):
        if i["name"] in by_name:
            raise d.fail(f"images[{n}].name", f"{i['name']!r} is already images[{by_name[i['name']]}]")
        by_name[i["name"]] = n
    values = [(n, i["values"]) for n, i in enumerate(images) if i["values"]]
    for n, v in values:
        for m, w in values:
            if m != n and (w == v or w.startswith(v + ".")):
                raise d.fail(f"images[{m}].values", f"{w!r} overlaps images[{n}].values {v!r}")


def _file(d: _Doc, value: Any, path: str) -> dict:
    f = d.obj(value, path)
    kind = d.field(f, "kind", path, lambda v, p: d.str(v, p, _kind_problem, 32))
    member = d.field(f, "path", path, lambda v, p: d.str(v, p, _member_rule(kind), 512))
    out = {
        "path": member, "kind": kind,
        "sha256": d.field(f, "sha256", path, lambda v, p: d.str(v, p, names.hex64_problem, 64)),
        "size": d.field(f, "size", path, lambda v, p: d.int(v, p, 0, MAX_CHART_BYTES if kind == "chart" else MAX_SIZE)),
        "name": d.field(f, "name", path, lambda v, p: d.str(v, p, limit=255), ""),
        "version": d.field(f, "version", path, lambda v, p: d.str(v, p, limit=128), ""),
    }
    if kind == "chart":
        from airgap.chartoci import chart_name_problem, chart_version_problem
        d.str(out["name"], f"{path}.name", chart_name_problem)
        d.str(out["version"], f"{path}.version", chart_version_problem)
    return out


def _kind_problem(kind: str) -> str | None:
    if kind in ("chart", "crd") or (kind.isascii() and kind.isalnum() and kind.islower()):
        return None
    return "is not a file kind (chart, crd, or a lower-case word)"


def _member_rule(kind: str) -> Rule:
    """Where each kind of file lives in the tar (docs/bundle-format.md): chart/NAME.tgz, crds/NAME;
    files of kinds this reader does not know (tools/ from a newer writer) under a relative path."""
    def rule(member: str) -> str | None:
        top, sep, rest = member.partition("/")
        if kind == "chart":
            ok = top == "chart" and sep and rest.endswith(".tgz") and not names.file_name_problem(rest)
            return None if ok else "must be chart/<name>-<version>.tgz"
        if kind == "crd":
            return None if top == "crds" and sep and not names.file_name_problem(rest) else "must be crds/<file name>"
        problem = names.relative_path_problem(member)
        if problem:
            return problem
        return "may not sit in a directory the format reserves" if top in RESERVED_DIRS or not sep else None
    return rule


RESERVED_DIRS = ("oci", "chart", "crds")


def _base(d: _Doc) -> Callable[[Any, str], dict]:
    def read(value: Any, path: str) -> dict:
        b = d.obj(value, path)
        kind = d.field(b, "kind", path, lambda v, p: d.str(v, p, lambda s: None if s in ("bundle", "inventory")
                                                           else "must be bundle or inventory"))
        return {"kind": kind, "digest": d.field(b, "digest", path, lambda v, p: d.str(v, p, names.digest_problem)),
                "release": d.field(b, "release", path, d.str, ""), "source": d.field(b, "source", path, d.str, "")}
    return read


def _part(d: _Doc, value: Any, path: str) -> dict:
    p = d.obj(value, path)
    return {"name": d.field(p, "name", path, lambda v, q: d.str(v, q, names.file_name_problem, 255)),
            "index": d.field(p, "index", path, lambda v, q: d.int(v, q, 2, MAX_PARTS + 1)),
            "sha256": d.field(p, "sha256", path, lambda v, q: d.str(v, q, names.hex64_problem, 64)),
            "size": d.field(p, "size", path, d.int)}
