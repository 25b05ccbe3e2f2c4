"""Reads the machine-readable block of IMAGES.md: the one list of what ships.

IMAGES.md is written for people; the tool reads only its fenced block opened with ```` ```yaml airgap ````.
Errors name the file and the line of the entry at fault.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from airgap import limits, safeyaml
from airgap.errors import InputError
from airgap.model import Platform, Reference
from airgap.model.reference import valid_repository, valid_tag
from airgap.names import repository_problem

_FENCE_OPEN = re.compile(r"^(```+|~~~+)\s*yaml\s+airgap\s*$")
_VALUES_PATH = re.compile(r"^[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*$")
_HEX64 = re.compile(r"^[a-f0-9]{64}$")
MAX_IMAGES_MD = limits.IMAGES_MD_BYTES


@dataclass(frozen=True)
class BuildSpec:
    context: str
    dockerfile: str = "Dockerfile"
    args: dict[str, str] = field(default_factory=dict)
    target: str | None = None


@dataclass(frozen=True)
class ArtifactSpec:
    """Files (a model, data) packed as an OCI artifact: see airgap/artifact.py."""
    path: str                                  # a file or directory, relative to IMAGES.md
    artifact_type: str                         # the manifest's artifactType, e.g. application/vnd.airgap.model.v1
    layers: str = "tar"                        # "tar": one tar+gzip layer; "files": one blob per file
    root: str = ""                             # where the files sit inside the tar layer (tar only)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class KeylessSpec:
    """IMAGES.md ``verify:`` without a key: who must have signed, keyless, under which trusted root."""

    line: int
    trusted_root: str                   # a Sigstore trusted_root.json, relative to IMAGES.md
    identity: str | None = None         # the certificate's SAN, exact ...
    identity_regexp: str | None = None  # ... or a regular expression matched whole
    issuer: str | None = None           # the OIDC issuer, exact ...
    issuer_regexp: str | None = None    # ... or a regular expression matched whole


@dataclass(frozen=True)
class ImageEntry:
    name: str
    line: int
    source: str | None = None          # mirror: a registry reference or oci:DIR:REF
    build: BuildSpec | None = None     # first-party: built from source (see `airgap build`)
    tag: str | None = None             # tag at the target; default: the source tag, or `release` for builds
    values: str | None = None
    platforms: tuple[Platform, ...] = ()
    verify_key: str | None = None      # upstream's cosign public key its signature must verify with
    verify_identity: str | None = None  # the repository the upstream signed (default: the source's)
    overlay: BuildSpec | None = None   # a second build FROM the first (build: only): see airgap/build/plan.py
    artifact: ArtifactSpec | None = None  # files packed as an OCI artifact in the local store
    verify_keyless: KeylessSpec | None = None  # upstream signed keyless (Sigstore bundle, Fulcio + log)

    @property
    def verifies(self) -> bool:
        """The upstream's signature is checked at bundle time (key-based or keyless)."""
        return bool(self.verify_key) or self.verify_keyless is not None

    @property
    def local(self) -> bool:
        """Made on the connected host (built or packed) rather than mirrored."""
        return self.build is not None or self.artifact is not None


@dataclass(frozen=True)
class FileEntry:
    line: int
    path: str | None = None
    url: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class ImagesFile:
    path: Path
    release: str
    images: tuple[ImageEntry, ...]
    chart: str | None
    crds: tuple[FileEntry, ...]
    platforms: tuple[Platform, ...]
    source: str | None = None  # the application sources builds use without --source: GIT_URL@COMMIT or a dir

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def _extract_block(text: str, path: Path) -> tuple[str, int]:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _FENCE_OPEN.match(line.strip())
        if not m:
            continue
        fence = m.group(1)
        for j in range(i + 1, len(lines)):
            if lines[j].strip().startswith(fence[:3]) and lines[j].strip().strip(fence[0]) == "":
                return "\n".join(lines[i + 1:j]), i + 1
        raise InputError(f"{path}:{i + 1}: the ```yaml airgap block is never closed")
    raise InputError(f"{path}: no ```yaml airgap block found (IMAGES.md must hold one; see its documentation)")


def _line(node: yaml.Node, offset: int) -> int:
    return node.start_mark.line + offset + 1


def load(path: Path) -> ImagesFile:
    path = Path(path)
    try:
        if path.stat().st_size > MAX_IMAGES_MD:
            raise InputError(f"{path}: {path.stat().st_size} bytes, over the {MAX_IMAGES_MD}-byte limit for IMAGES.md")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    block, offset = _extract_block(text, path)
    return parse_block(block, path, offset)


def parse_block(block: str, path: Path, offset: int = 0) -> ImagesFile:
    try:
        root = safeyaml.compose(block)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        loc = f"{path}:{mark.line + offset + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"{loc}: invalid YAML in the airgap block: {problem}") from None
    if not isinstance(root, yaml.MappingNode):
        raise InputError(f"{path}:{offset + 1}: the airgap block must be a mapping with release: and images:")
    for k, _ in root.value:
        if not isinstance(k, yaml.ScalarNode):
            raise InputError(f"{path}:{_line(k, offset)}: keys of the airgap block must be plain words")
    doc = {k.value: v for k, v in root.value}
    where = lambda node: f"{path}:{_line(node, offset)}"  # noqa: E731
    allowed = {"release", "images", "chart", "crds", "platforms", "source"}
    for key_node, _ in root.value:
        if key_node.value not in allowed:
            raise InputError(f"{where(key_node)}: unknown key {key_node.value!r} "
                             f"(allowed: {', '.join(sorted(allowed))})")

    release_node = doc.get("release")
    if release_node is None or not isinstance(release_node, yaml.ScalarNode) or not release_node.value:
        raise InputError(f"{path}:{offset + 1}: the airgap block needs release: (the version being shipped)")
    release = str(release_node.value)
    if not valid_tag(release):
        raise InputError(f"{where(release_node)}: release {release!r} is not usable as an image tag")

    platforms = _platforms(doc.get("platforms"), where) if "platforms" in doc else ()

    images_node = doc.get("images")
    if not isinstance(images_node, yaml.SequenceNode) or not images_node.value:
        raise InputError(f"{path}:{offset + 1}: the airgap block needs a non-empty images: list")
    images: list[ImageEntry] = []
    names: dict[str, int] = {}
    values_seen: dict[str, int] = {}
    for node in images_node.value:
        entry = _image(node, where, path, offset)
        if entry.name in names:
            raise InputError(f"{path}:{entry.line}: image name {entry.name!r} is already used on line "
                             f"{names[entry.name]}")
        names[entry.name] = entry.line
        if entry.values:
            if entry.values in values_seen:
                raise InputError(f"{path}:{entry.line}: image {entry.name}: values key {entry.values!r} is already "
                                 f"used on line {values_seen[entry.values]}")
            values_seen[entry.values] = entry.line
        images.append(entry)

    _check_values_paths(images, path)

    chart_node = doc.get("chart")
    chart = str(chart_node.value) if isinstance(chart_node, yaml.ScalarNode) and chart_node.value else None

    crds: list[FileEntry] = []
    crds_node = doc.get("crds")
    if crds_node is not None:
        if not isinstance(crds_node, yaml.SequenceNode):
            raise InputError(f"{where(crds_node)}: crds: must be a list of {{path: ...}} or {{url: ..., sha256: ...}}")
        for node in crds_node.value:
            crds.append(_file(node, where))
    source_node = doc.get("source")
    source = None
    if source_node is not None:
        if not isinstance(source_node, yaml.ScalarNode) or not source_node.value:
            raise InputError(f"{where(source_node)}: source: is GIT_URL@COMMIT or a directory "
                             "(the application sources)")
        source = str(source_node.value)
    return ImagesFile(path, release, tuple(images), chart, tuple(crds), platforms, source)


def _check_values_paths(images: list[ImageEntry], path: Path) -> None:
    """The values file nests these paths: none may sit inside another, nor on the chart's own
    top-level `image` (registry and tag for first-party images) or `global`."""
    for e in images:
        if not e.values:
            continue
        if e.values.split(".")[0] in ("image", "global"):
            raise InputError(f"{path}:{e.line}: image {e.name}: values: {e.values} would overwrite the chart's "
                             f"top-level {e.values.split('.')[0]}: settings")
        for o in images:
            if o is not e and o.values and o.values.startswith(e.values + "."):
                raise InputError(f"{path}:{o.line}: image {o.name}: values: {o.values} sits inside "
                                 f"{e.values} of image {e.name} (line {e.line})")


def _scalar_map(node: yaml.Node, where: Any, what: str) -> dict[str, tuple[Any, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise InputError(f"{where(node)}: {what} must be a mapping")
    out: dict[str, tuple[Any, yaml.Node]] = {}
    for k, v in node.value:
        if not isinstance(k, yaml.ScalarNode):
            raise InputError(f"{where(k)}: {what} keys must be plain words")
        if isinstance(v, yaml.ScalarNode):
            out[k.value] = (v.value, v)
        else:
            out[k.value] = (v, v)
    return out


def _platforms(node: yaml.Node, where: Any) -> tuple[Platform, ...]:
    if not isinstance(node, yaml.SequenceNode):
        raise InputError(f"{where(node)}: platforms: must be a list like [linux/amd64, linux/arm64]")
    out = []
    for item in node.value:
        if not isinstance(item, yaml.ScalarNode):
            raise InputError(f"{where(item)}: platforms: entries are OS/ARCH words, like linux/amd64")
        try:
            out.append(Platform.parse(str(item.value)))
        except InputError as exc:
            raise InputError(f"{where(item)}: {exc}") from None
    return tuple(out)


def _image(node: yaml.Node, where: Any, path: Path, offset: int) -> ImageEntry:
    fields = _scalar_map(node, where, "each images: entry")
    line = _line(node, offset)
    allowed = {"name", "source", "build", "tag", "values", "platforms", "verify", "overlay", "artifact"}
    for key in fields:
        if key not in allowed:
            raise InputError(f"{where(fields[key][1])}: unknown key {key!r} in image entry "
                             f"(allowed: {', '.join(sorted(allowed))})")
    name = fields.get("name", (None, node))[0]
    if not isinstance(name, str) or not name:
        raise InputError(f"{path}:{line}: image entry without name:")
    if not valid_repository(name):
        raise InputError(f"{path}:{line}: image name {name!r} is not a valid repository name "
                         "(lower-case letters, digits, . _ - and /)")
    if repository_problem(name):  # the rules a bundle's names are held to, too (airgap.names)
        raise InputError(f"{path}:{line}: image name {name!r} {repository_problem(name)}")
    label = f"{path}:{line}: image {name}"
    source = fields.get("source", (None, None))[0]
    build_node = fields.get("build", (None, None))[0]
    artifact_node = fields.get("artifact", (None, None))[1]
    if sum(x is not None for x in (source, build_node, artifact_node)) != 1:
        raise InputError(f"{label}: give exactly one of source: (mirror), build: (first-party) "
                         "or artifact: (files packed as an OCI artifact)")
    build = None
    artifact = None
    if artifact_node is not None:
        from airgap.artifact import parse_spec  # the artifact kind lives in its own module

        artifact = parse_spec(artifact_node, where, label)
    elif source is not None:
        if not isinstance(source, str) or not source:
            raise InputError(f"{label}: source: must be an image reference")
        if not source.startswith("oci:"):
            try:
                Reference.parse(source)
            except InputError as exc:
                raise InputError(f"{label}: {exc}") from None
        elif source.count(":") < 2:
            raise InputError(f"{label}: an oci: source is written oci:DIR:REF")
    else:
        build = _build_spec(build_node, where, name, label, "build:")
    overlay = None
    if "overlay" in fields:
        if build is None:
            raise InputError(f"{label}: overlay: applies to images built from source (build:)")
        overlay = _build_spec(fields["overlay"][1], where, name, label, "overlay:")
    tag = fields.get("tag", (None, None))[0]
    if tag is not None and (not isinstance(tag, str) or not valid_tag(tag)):
        raise InputError(f"{label}: tag {tag!r} is not a valid tag")
    values = fields.get("values", (None, None))[0]
    if values is not None and (not isinstance(values, str) or not _VALUES_PATH.match(values)):
        raise InputError(f"{label}: values: must be a dotted path into the chart's values, like opensearch.image")
    platforms: tuple[Platform, ...] = ()
    if "platforms" in fields:
        platforms = _platforms(fields["platforms"][1], where)
    verify_key = verify_identity = None
    keyless = None
    if "verify" in fields:
        vfields = _scalar_map(fields["verify"][1], where, "verify:")
        if "key" not in vfields:
            keyless = _keyless(vfields, where, label, _line(fields["verify"][1], offset))
        else:
            verify_key = vfields.get("key", (None, None))[0]
            verify_identity = vfields.get("identity", (None, None))[0]
            if not isinstance(verify_key, str) or not verify_key or not set(vfields) <= {"key", "identity"} \
                    or (verify_identity is not None and not isinstance(verify_identity, str)):
                raise InputError(f"{label}: verify: takes key: PATH (the upstream's cosign public key) and optionally "
                                 "identity: REGISTRY/REPOSITORY (what the upstream signed, when you pull from a "
                                 "mirror); keyless, it takes identity:/identity-regexp:, issuer:/issuer-regexp: and "
                                 "trusted-root: without key:")
        if source is None or source.startswith("oci:"):
            raise InputError(f"{label}: verify: applies to images mirrored from a registry")
    return ImageEntry(name=name, line=line, source=source, build=build, tag=tag, values=values, platforms=platforms,
                      verify_key=verify_key, verify_identity=verify_identity, overlay=overlay, artifact=artifact,
                      verify_keyless=keyless)


_KEYLESS_KEYS = ("identity", "identity-regexp", "issuer", "issuer-regexp", "trusted-root")


def _keyless(vfields: dict[str, tuple[Any, yaml.Node]], where: Any, label: str, line: int) -> KeylessSpec:
    """``verify:`` for a keyless upstream, like cosign's --certificate-identity[-regexp] and
    --certificate-oidc-issuer[-regexp]; the trusted root is a file (offline: no TUF)."""
    import re

    for key, (_, node) in vfields.items():
        if key not in _KEYLESS_KEYS:
            raise InputError(f"{where(node)}: unknown key {key!r} in verify: (keyless takes "
                             f"{', '.join(_KEYLESS_KEYS)}; key-based takes key: and identity:)")
    values: dict[str, str] = {}
    for key, (value, node) in vfields.items():
        if not isinstance(value, str) or not value:
            raise InputError(f"{where(node)}: verify: {key}: must be a non-empty string")
        if key.endswith("-regexp"):
            try:
                re.compile(value)
            except re.error as exc:
                raise InputError(f"{where(node)}: verify: {key}: {value!r} is not a regular expression ({exc})") \
                    from None
        values[key] = value
    for a, b, what in (("identity", "identity-regexp", "the signer's certificate identity (e-mail or URI)"),
                       ("issuer", "issuer-regexp", "the OIDC issuer of the signer's certificate")):
        if (a in values) == (b in values):
            raise InputError(f"{label}: verify: needs key: PATH, or (keyless) exactly one of {a}: or {b}: "
                             f"({what})")
    if "trusted-root" not in values:
        raise InputError(f"{label}: verify: keyless needs trusted-root: PATH (a Sigstore trusted_root.json: "
                         "the public-good one, or your private Sigstore's; it is never fetched)")
    return KeylessSpec(line=line, trusted_root=values["trusted-root"], identity=values.get("identity"),
                       identity_regexp=values.get("identity-regexp"), issuer=values.get("issuer"),
                       issuer_regexp=values.get("issuer-regexp"))


def _build_spec(node: Any, where: Any, name: str, label: str, what: str) -> BuildSpec:
    bfields = _scalar_map(node, where, what)
    build_keys = {"context", "dockerfile", "args", "target"}
    for key in bfields:
        if key not in build_keys:  # a misspelt dockerfile: would otherwise build the wrong file
            raise InputError(f"{where(bfields[key][1])}: image {name}: unknown key {key!r} in {what} "
                             f"(allowed: {', '.join(sorted(build_keys))})")
    context = bfields.get("context", (None, None))[0]
    if not isinstance(context, str) or not context:
        raise InputError(f"{label}: {what} needs context:")
    args_node = bfields.get("args", ({}, None))[0]
    args: dict[str, str] = {}
    if isinstance(args_node, yaml.MappingNode) and all(isinstance(v, yaml.ScalarNode) for _, v in args_node.value):
        args = {k.value: str(v.value) for k, v in args_node.value}
    elif args_node != {}:
        raise InputError(f"{where(bfields['args'][1])}: image {name}: {what} args: must map names to values, "
                         "like {BASE_IMAGE: debian:12}")
    return BuildSpec(context=context, dockerfile=str(bfields.get("dockerfile", ("Dockerfile", None))[0]),
                     args=args, target=bfields.get("target", (None, None))[0])


def _file(node: yaml.Node, where: Any) -> FileEntry:
    fields = _scalar_map(node, where, "each crds: entry")
    line = where(node)  # "path:lineno"
    path = fields.get("path", (None, None))[0]
    url = fields.get("url", (None, None))[0]
    sha = fields.get("sha256", (None, None))[0]
    if (path is None) == (url is None):
        raise InputError(f"{line}: a crds: entry needs exactly one of path: or url:")
    if any(v is not None and not isinstance(v, str) for v in (path, url, sha)):
        raise InputError(f"{line}: crds: path:, url: and sha256: take plain text")
    if url is not None:
        if not str(url).startswith("https://"):
            raise InputError(f"{line}: crds url {url!r} must be https://")
        if not sha or not _HEX64.match(str(sha)):
            raise InputError(f"{line}: crds url {url} needs sha256: (64 hex digits) to pin it")
    lineno = int(str(line).rsplit(":", 1)[1])
    return FileEntry(line=lineno, path=path, url=url, sha256=sha)
