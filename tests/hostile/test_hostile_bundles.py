"""Hostile bundles and inputs: every one is refused with one line naming the culprit, nothing pushed.

Each case crafts a bundle from a real signed one (tests/hostile.py), re-signed with the test key when
it must get past the signature, and runs the real CLI against a real Distribution registry. Every
case asserts: the exit code (never 0, never 70), a single ``airgap: error:`` line naming the member,
image, field or part at fault, no traceback, an untouched registry (no repository, no blob, no
upload), no file written anywhere, a peak RSS under 300 MB and a run under 60 s.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from hostile import MANIFEST, SIGNATURE, Base, Edit, make_base, make_chart, run_measured, tree
from helpers import module_registry

MAX_RSS = 300 << 20
MAX_SECONDS = 60


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    return make_base(tmp_path_factory.mktemp("hostile-base"))


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """One registry for every case: a case that pushed anything would leave it dirty for the next."""
    with module_registry(tmp_path_factory.mktemp("hostile-registry")) as registry:
        yield registry


def _untouched(registry) -> None:
    assert registry.catalog() == []
    files = [p for p in registry.data_dir.rglob("*") if p.is_file()]
    assert files == [], f"the registry stored {files[:5]}"


# -- the cases --------------------------------------------------------------------------------------
# Each builds its bundle(s) in ``out`` from an Edit of the base bundle and returns the paths to give.

Craft = Callable[[Edit, Path], "list[Path]"]


@dataclass
class Case:
    id: str
    craft: Craft
    culprit: str                       # must appear in the one error line
    modes: tuple[str, ...] = ("key",)  # key: load --key; skip: load --insecure-skip-verify; verify; inspect
    code: int = 3


def _write(e: Edit, out: Path) -> list[Path]:
    return [e.write(out / "b.tar")]


def edit(fn: Callable[[Edit], object]) -> Craft:
    def craft(e: Edit, out: Path) -> list[Path]:
        fn(e)
        return _write(e, out)
    return craft


def _set(path: str, value) -> Callable[[Edit], None]:
    """Set a field of the manifest by a dotted path with [n] indexes, e.g. images[0].tag."""
    def fn(e: Edit) -> None:
        node = e.doc
        keys = path.replace("]", "").replace("[", ".").split(".")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        last = keys[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return fn


def _raw(data: bytes, sign: bool = True) -> Callable[[Edit], None]:
    def fn(e: Edit) -> None:
        e.raw_manifest = data
        e.sign = sign
    return fn


def _unsigned(fn: Callable[[Edit], None]) -> Callable[[Edit], None]:
    def wrapped(e: Edit) -> None:
        fn(e)
        e.remove(SIGNATURE)
    return wrapped


def _tampered(e: Edit) -> None:
    e.image(0)["name"] = "../escape"
    e.sign = False  # keeps the original signature: the bytes changed after signing


def _huge_manifest(e: Edit) -> None:
    e.raw_manifest = b'{"kind": "AirgapBundle", "pad": [' + b"0," * (15 << 20) + b"0]}"


def _deep(e: Edit) -> None:
    e.raw_manifest = e.manifest_bytes()[:-2] + b', "extension": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def _value_bomb(e: Edit) -> None:
    e.raw_manifest = e.manifest_bytes()[:-2] + b', "x": [' + b"{}," * (3 << 20) + b"{}]}"


def _dup_member(name: str, data: bytes | None = None) -> Callable[[Edit], None]:
    def fn(e: Edit) -> None:
        e.add(name, data if data is not None else e.data(name))
    return fn


def _first_blob(e: Edit) -> str:
    return next(i.name for i, _ in e.members if i.name.startswith("oci/blobs/"))


def _add_special(kind: str) -> Callable[[Edit], None]:
    def fn(e: Edit) -> None:
        name = e.file("crd")["path"]
        at = e.index(name)
        e.remove(name)
        if kind == "symlink":
            e.add(name, at=at, type=tarfile.SYMTYPE, linkname="/etc/passwd")
        elif kind == "hardlink":
            e.add(name, at=at, type=tarfile.LNKTYPE, linkname=MANIFEST)
        elif kind == "fifo":
            e.add(name, at=at, type=tarfile.FIFOTYPE)
        elif kind == "chardev":
            e.add(name, at=at, type=tarfile.CHRTYPE, devmajor=1, devminor=3)
    return fn


def _index_edit(fn: Callable[[dict], None]) -> Callable[[Edit], None]:
    def wrapped(e: Edit) -> None:
        index = json.loads(e.data("oci/index.json"))
        fn(index)
        e.set("oci/index.json", json.dumps(index).encode())
    return wrapped


def _swap_refs(index: dict) -> None:
    a, b = [m for m in index["manifests"] if not m["annotations"]["org.opencontainers.image.ref.name"]
            .split(":")[1].startswith("sha256-")][:2]
    a["annotations"], b["annotations"] = b["annotations"], a["annotations"]


def _annotations_list(index: dict) -> None:
    index["manifests"][0]["annotations"] = ["org.opencontainers.image.ref.name", "x"]


def _extra_ref(index: dict) -> None:
    extra = dict(index["manifests"][0])
    extra["annotations"] = {"org.opencontainers.image.ref.name": "hidden:latest"}
    index["manifests"].append(extra)


def _chart(transform: Callable[[list], list]) -> Callable[[Edit], None]:
    def fn(e: Edit) -> None:
        e.set_chart(transform(e.chart_members()))
    return fn


def _chart_member(name: str, data: bytes = b"x", **attrs) -> Callable[[list], list]:
    def transform(members: list) -> list:
        info = tarfile.TarInfo(name)
        for k, v in attrs.items():
            setattr(info, k, v)
        return members + [(info, data)]
    return transform


def _chart_yaml(text: bytes) -> Callable[[list], list]:
    def transform(members: list) -> list:
        return [(i, text if i.name.endswith("/Chart.yaml") else d) for i, d in members]
    return transform


ALIAS_BOMB = (b"apiVersion: v2\nname: demo\nversion: 0.1.0\n"
              b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
              b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
              b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
              b"g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
              b"i: [*h, *h, *h, *h, *h, *h, *h, *h, *h]\n")


def _gzip_bomb(e: Edit) -> None:
    import gzip
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=1) as gz:
        tf = tarfile.open(fileobj=gz, mode="w")
        info = tarfile.TarInfo("demo/Chart.yaml")
        chart = b"apiVersion: v2\nname: demo\nversion: 0.1.0\n"
        info.size = len(chart)
        tf.addfile(info, io.BytesIO(chart))
        info = tarfile.TarInfo("demo/zeros")
        info.size = 300 << 20
        gz.write(info.tobuf())
        zeros = b"\0" * (1 << 20)
        for _ in range(300):
            gz.write(zeros)
    e.set_chart(raw=buf.getvalue())


def _pax_bomb(e: Edit, out: Path) -> list[Path]:
    """A pax header claiming 400 MiB (sparse on disk): tarfile would read it whole into memory."""
    path = e.write(out / "b.tar")
    with open(path, "r+b") as fh:
        fh.seek(-1024, 2)
        header = tarfile.TarInfo("././@PaxHeader")
        header.type = tarfile.XHDTYPE
        header.size = 400 << 20
        fh.write(header.tobuf(format=tarfile.USTAR_FORMAT))
        fh.truncate(fh.tell() + (400 << 20) + 1024)
    return [path]


def _many_members(e: Edit, out: Path) -> list[Path]:
    """50,000 empty blobs appended (a header each): far more members than the manifest accounts for."""
    path = e.write(out / "b.tar")
    block = tarfile.TarInfo(f"oci/blobs/sha256/{'0' * 64}")
    with open(path, "r+b") as fh:
        fh.seek(-1024, 2)
        for n in range(50_000):
            block.name = f"oci/blobs/sha256/{n:064x}"
            fh.write(block.tobuf(format=tarfile.USTAR_FORMAT))
        fh.write(b"\0" * 1024)
    return [path]


def _zstd(e: Edit, out: Path, bomb: int = 0, garbage: bool = False) -> list[Path]:
    import zstandard
    tar = e.write(out / "plain.tar")
    path = out / "b.tar.zst"
    with open(tar, "rb") as src, open(path, "wb") as raw:
        with zstandard.ZstdCompressor(level=1).stream_writer(raw, closefd=False) as z:
            data = src.read()
            z.write(data[:-1024] if bomb else data)
            if bomb:  # a member that decompresses far beyond anything the manifest declares
                info = tarfile.TarInfo(f"oci/blobs/sha256/{'ab' * 32}")
                info.size = bomb
                z.write(info.tobuf(format=tarfile.PAX_FORMAT))
                zeros = b"\0" * (1 << 20)
                for _ in range(bomb >> 20):
                    z.write(zeros)
    tar.unlink()
    if garbage:
        with open(path, "r+b") as fh:
            fh.seek(64)
            fh.write(b"\xff" * 256)
    return [path]


def _split(fn: Callable[[Base, Path], list[Path]]) -> Craft:
    """A case on the base's split bundle rather than the single-file one."""
    def craft(e: Edit, out: Path) -> list[Path]:
        return fn(e.base, out)
    return craft


def _split_twice(base: Base, out: Path) -> list[Path]:
    return [*base.split, base.split[-1]]


def _split_part_with(name: str) -> Callable[[Base, Path], list[Path]]:
    """A part carrying a member a part may not hold (its checksum updated in a re-signed manifest)."""
    def fn(base: Base, out: Path) -> list[Path]:
        parts = base.split
        first = Edit(base, parts[0])
        new_part = out / parts[1].name
        with tarfile.open(parts[1]) as src, open(new_part, "wb") as fh:
            members = [(info, src.extractfile(info).read()) for info in src]
            extra = tarfile.TarInfo(name)
            extra.size = 3
            for i, d in [*members, (extra, b"bad")]:
                fh.write(i.tobuf(format=tarfile.PAX_FORMAT) + d + b"\0" * ((-len(d)) % 512))
            fh.write(b"\0" * 1024)
        body = new_part.read_bytes()
        entry = next(p for p in first.doc["parts"] if p["name"] == parts[1].name)
        entry["sha256"], entry["size"] = hashlib.sha256(body).hexdigest(), len(body)
        return [first.write(out / parts[0].name), new_part, *parts[2:]]
    return fn


def _size_lie(e: Edit) -> None:
    """The manifest and the layout index agree on a wrong size for the image's manifest."""
    image = e.image(0)
    image["size"] += 1
    index = json.loads(e.data("oci/index.json"))
    for m in index["manifests"]:
        if m["digest"] == image["digest"]:
            m["size"] = image["size"]
    e.set("oci/index.json", json.dumps(index).encode())


def _long_int(e: Edit) -> None:
    e.raw_manifest = e.manifest_bytes().replace(b'"count": ', b'"count": ' + b"9" * 100_000, 1)


def _images_object(e: Edit) -> None:
    e.doc["images"] = {"app": e.image(0)}


CASES = [
    # order: head and manifest structure (read first, within caps, signature before parse)
    Case("manifest-30MB-unsigned", edit(_unsigned(_huge_manifest)), "airgap-bundle.json is 3", ("skip", "inspect")),
    Case("manifest-30MB-signed", edit(_huge_manifest), "airgap-bundle.json is 3"),
    Case("manifest-30MB-verify", edit(_huge_manifest), "over the", ("verify",)),
    Case("tampered-manifest", edit(_tampered), "signature does not verify", ("key", "verify")),
    Case("tampered-and-deep", edit(lambda e: (_deep(e), setattr(e, "sign", False))), "signature does not verify"),
    Case("deep-nesting", edit(_deep), "nested deeper than", ("key", "skip", "inspect")),
    Case("value-bomb", edit(_value_bomb), "over 1000000 values", ("key",)),
    Case("not-json", edit(_raw(b"\xff\xfe not json")), "not valid JSON"),
    Case("manifest-is-a-list", edit(_raw(b"[1, 2, 3]")), "must be a JSON object"),
    Case("images-object", edit(_images_object), "images must be a list", ("key", "skip")),
    Case("size-string", edit(_set("images[0].size", "506")), "images[0].size must be an integer"),
    Case("size-bool", edit(_set("images[0].size", True)), "images[0].size must be an integer"),
    Case("size-negative", edit(_set("blobs.count", -1)), "blobs.count is -1"),
    Case("values-not-string", edit(_set("images[0].values", 5)), "images[0].values must be a string"),
    Case("integer-100k-digits", edit(_long_int), "an integer of 1000"),
    Case("root-size-lie", edit(_size_lie), "the bundle manifest says", ("key", "verify")),
    Case("format-version-string", edit(_set("formatVersion", "1")), "formatVersion must be an integer"),
    Case("format-version-2", edit(_set("formatVersion", 2)), "format version 2 is not supported"),
    Case("missing-images", edit(lambda e: e.doc.pop("images")), "images is missing"),
    Case("source-10MB", edit(_set("images[0].source", "x" * (10 << 20))), "images[0].source is 10485760 characters"),
    Case("too-many-images", edit(lambda e: e.doc.__setitem__("images", [e.image(0)] * 10_001)), "over the limit of"),
    Case("signature-not-second", edit(lambda e: e.members.append(e.members.pop(1))), "airgap-bundle.json.sig",
         ("skip",)),
    Case("signature-huge", edit(lambda e: setattr(e, "sign", False) or e.set(SIGNATURE, b"A" * 100_000)),
         "airgap-bundle.json.sig"),
    Case("first-member-not-manifest", edit(lambda e: e.members.insert(0, e.members.pop(2))), "first member"),
    # names, tags, digests, paths: the rules IMAGES.md follows
    Case("name-dotdot", edit(_set("images[0].name", "../escape")), "images[0].name '../escape'", ("key", "verify")),
    Case("name-dotdot-unsigned", edit(_unsigned(_set("images[0].name", "../escape"))), "images[0].name '../escape'",
         ("skip", "inspect")),
    Case("name-nested-dotdot", edit(_set("images[0].name", "a/../../b")), "images[0].name"),
    Case("name-absolute", edit(_set("images[0].name", "/abs")), "images[0].name '/abs'"),
    Case("name-host", edit(_set("images[0].name", "evil.example.com/x")), "registry host"),
    Case("name-upper", edit(_set("images[0].name", "App")), "images[0].name 'App'"),
    Case("name-too-long", edit(_set("images[0].name", "a" * 300)), "images[0].name"),
    Case("tag-traversal", edit(_set("images[0].tag", "../multi/manifests/hijacked")), "images[0].tag",
         ("key", "skip")),
    Case("tag-non-ascii", edit(_set("images[0].tag", "t\u00e4g")), "images[0].tag"),
    Case("tag-too-long", edit(_set("images[0].tag", "t" * 129)), "images[0].tag"),
    Case("digest-malformed", edit(_set("images[0].digest", "sha256:../../x")), "images[0].digest"),
    Case("signature-digest-malformed", edit(_set("images[0].signatures[0].digest", "md5:abc")),
         "images[0].signatures[0].digest"),
    Case("referenced-not-digest", edit(_set("referenced", ["../../etc"])), "referenced[0]"),
    Case("values-traversal", edit(_set("images[0].values", "../x")), "images[0].values"),
    Case("values-top-level", edit(_set("images[0].values", "global.image")), "images[0].values"),
    Case("values-overlap", edit(_set("images[1].values", "app.image.inner")), "images[1].values"),
    Case("duplicate-image", edit(lambda e: e.doc["images"].append(dict(e.image(0)))), "images[2].name 'app'"),
    Case("platform-junk", edit(_set("images[1].platforms", ["linux/amd64", "../x"])), "images[1].platforms[1]"),
    Case("media-type-bogus", edit(_set("images[0].mediaType", "text/html")), "images[0].mediaType"),
    Case("identity-junk", edit(_set("images[0].identity", "not a reference")), "images[0].identity"),
    Case("crd-path-traversal", edit(_set("files[1].path", "crds/../../etc/cron.d/x")), "files[1].path"),
    Case("crd-path-absolute", edit(_set("files[1].path", "/etc/passwd")), "files[1].path"),
    Case("chart-path-elsewhere", edit(_set("files[0].path", "oci/index.json")), "files[0].path"),
    Case("chart-name-traversal", edit(_set("files[0].name", "../x")), "files[0].name"),
    Case("part-name-traversal", edit(_set("parts", [{"name": "../p.tar", "index": 2, "sha256": "0" * 64,
                                                     "size": 1}])), "parts[0].name"),
    Case("part-index-gap", edit(_set("parts", [{"name": "p.tar", "index": 5, "sha256": "0" * 64, "size": 1}])),
         "parts are numbered"),
    # tar: regular files, names as the format defines them, each once, layout agreeing with the manifest
    Case("duplicate-manifest-member", edit(_dup_member(MANIFEST, b'{"kind": "AirgapBundle", "images": []}')),
         "member airgap-bundle.json appears twice", ("key", "verify")),
    Case("duplicate-blob", edit(lambda e: _dup_member(_first_blob(e))(e)), "appears twice", ("key", "skip")),
    Case("duplicate-index", edit(_dup_member("oci/index.json")), "member oci/index.json appears twice"),
    Case("symlink-member", edit(_add_special("symlink")), "symbolic link", ("key", "verify")),
    Case("hardlink-member", edit(_add_special("hardlink")), "hard link", ("key", "verify")),
    Case("fifo-member", edit(_add_special("fifo")), "FIFO", ("verify",)),
    Case("device-member", edit(_add_special("chardev")), "character device"),
    Case("dotdot-member", edit(lambda e: e.add("../x", b"x")), "member '../x'", ("key", "verify")),
    Case("absolute-member", edit(lambda e: e.add("/tmp/airgap-hostile", b"x")), "member '/tmp/airgap-hostile'",
         ("verify",)),
    Case("unknown-member", edit(lambda e: e.add("extra/notes.txt", b"x")), "member 'extra/notes.txt'"),
    Case("unlisted-crd", edit(lambda e: e.add("crds/extra.yaml", b"x")), "not listed in the bundle manifest"),
    Case("undefined-directory", edit(lambda e: e.add("evil", type=tarfile.DIRTYPE)), "member 'evil' is a directory"),
    Case("dot-slash-member", edit(lambda e: _rename(e, "oci/index.json", "./oci/index.json")), "./oci/index.json"),
    Case("index-refs-swapped", edit(_index_edit(_swap_refs)), "oci/index.json disagrees", ("key", "verify")),
    Case("index-extra-image", edit(_index_edit(_extra_ref)), "hidden:latest", ("skip",)),
    Case("index-annotations-list", edit(_index_edit(_annotations_list)), "manifests[0] has no ref.name"),
    Case("index-missing", edit(lambda e: e.remove("oci/index.json")), "oci/index.json is missing"),
    Case("layout-version", edit(lambda e: e.set("oci/oci-layout", b'{"imageLayoutVersion": "9"}')), "oci/oci-layout"),
    Case("pax-header-bomb", _pax_bomb, "extended tar header", ("key", "verify")),
    Case("too-many-members", _many_members, "members, more than its manifest accounts for", ("skip",)),
    Case("split-part-twice", _split(_split_twice), "give each part once", ("key", "verify")),
    Case("split-part-foreign-member", _split(_split_part_with("notes.txt")), "is not a blob"),
    # chart archives in the bundle
    Case("chart-dotdot", edit(_chart(_chart_member("demo/../../evil"))), "chart member 'demo/../../evil'",
         ("key", "verify")),
    Case("chart-absolute", edit(_chart(_chart_member("/etc/evil"))), "chart member '/etc/evil'"),
    Case("chart-symlink", edit(_chart(_chart_member("demo/link", b"", type=tarfile.SYMTYPE, linkname="/etc"))),
         "chart member 'demo/link'", ("verify",)),
    Case("chart-outside-dir", edit(_chart(_chart_member("other/file"))), "outside the chart's directory"),
    Case("chart-yaml-alias-bomb", edit(_chart(_chart_yaml(ALIAS_BOMB))), "aliases", ("key", "verify")),
    Case("chart-name-traversal-yaml", edit(_chart(_chart_yaml(b"apiVersion: v2\nname: ../x\nversion: 0.1.0\n"))),
         "Chart.yaml name '../x'"),
    Case("chart-name-mismatch", edit(_chart(_chart_yaml(b"apiVersion: v2\nname: demo\nversion: 9.9.9\n"))),
         "the bundle manifest says demo 0.1.0"),
    Case("chart-gzip-bomb", edit(_gzip_bomb), "unpacks to more than"),
    # zstd: the head is read and checked first, then streaming under the declared size
    Case("zstd-bomb-signed", lambda e, out: _zstd(e, out, bomb=1 << 30), "decompresses to more than",
         ("key", "verify")),
    Case("zstd-bomb-unsigned", lambda e, out: (e.remove(SIGNATURE), _zstd(e, out, bomb=1 << 30))[1],
         "decompresses to more than", ("skip",)),
    Case("zstd-declares-a-petabyte", lambda e, out: (e.remove(SIGNATURE), _set("blobs.bytes", 1 << 50)(e),
                                                     _zstd(e, out, bomb=1 << 30))[2], "free", ("skip",)),
    Case("zstd-tampered-head", lambda e, out: (_tampered(e), _zstd(e, out, bomb=1 << 30))[1],
         "signature does not verify"),
    Case("zstd-garbage", lambda e, out: _zstd(e, out, garbage=True), "b.tar.zst: "),
]


def _rename(e: Edit, name: str, new: str) -> None:
    e.members[e.index(name)][0].name = new


PARAMS = [pytest.param(c, mode, id=f"{c.id}-{mode}") for c in CASES for mode in c.modes]


@pytest.mark.parametrize("case, mode", PARAMS)
def test_hostile_bundle_is_refused(case: Case, mode: str, base: Base, target, tmp_path: Path):
    out = tmp_path / "bundle"
    out.mkdir()
    paths = case.craft(Edit(base), out)
    work = tmp_path / "work"
    work.mkdir()
    before_bundle, before_base = tree(out), tree(base.dir)
    if mode == "verify":
        args = ["verify", *map(str, paths), "--key", str(base.pub)]
    elif mode == "inspect":  # reads only the head, unverified: the same structural rules
        args = ["inspect", str(paths[0]), "--manifest-out", str(work / "m.json")]
    else:
        trust = ["--key", str(base.pub)] if mode == "key" else ["--insecure-skip-verify"]
        args = ["load", *map(str, paths), "--registry", f"{target.host}/site", "--insecure-registry", *trust,
                "--values-out", str(work / "out" / "values.yaml"), "--crds-out", str(work / "crds"),
                "--chart-out", str(work / "chart")]
    run = run_measured(args, cwd=work, timeout=MAX_SECONDS)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == case.code, (run.returncode, run.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("airgap: error: "), run.stderr[-2000:]
    assert case.culprit in lines[0], lines[0]
    assert "Traceback" not in run.stderr
    assert run.max_rss < MAX_RSS, f"peak RSS {run.max_rss >> 20} MiB"
    assert run.seconds < MAX_SECONDS
    _untouched(target)
    assert tree(work) == set(), tree(work)                  # nothing written where we run
    assert tree(out) == before_bundle, tree(out) - before_bundle  # no scratch left next to the bundle
    assert tree(base.dir) == before_base


def test_base_bundle_is_genuine(base: Base, target, tmp_path: Path):
    """The control: unedited (and merely re-signed, and zstd-compressed) the base verifies and dry-runs."""
    rewritten = Edit(base).write(tmp_path / "resigned.tar")
    zst = _zstd(Edit(base), tmp_path)[0]
    for path in (base.bundle, rewritten, zst):
        run = run_measured(["verify", str(path), "--key", str(base.pub)], cwd=tmp_path)
        assert run.returncode == 0, run.stderr
    run = run_measured(["verify", *map(str, base.split), "--key", str(base.pub)], cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    run = run_measured(["load", str(rewritten), "--registry", f"{target.host}/site", "--insecure-registry",
                        "--key", str(base.pub), "--dry-run"], cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    _untouched(target)


# -- hostile inputs on the connected side: IMAGES.md and chart directories --------------------------

MD_BOMB = ("release: 1.0\nimages:\n  - name: a\n    source: x/a:1\n"
           "x: &a [l, l, l, l, l, l, l, l, l]\ny: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
           "z: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n")


@dataclass
class InputCase:
    id: str
    block: str = ""
    chart: bytes | None = None        # Chart.yaml of a chart directory given with --chart
    raw: bytes | None = None          # the whole IMAGES.md
    culprit: str = ""
    extra: list[str] = field(default_factory=list)


INPUT_CASES = [
    InputCase("images-md-alias-bomb", MD_BOMB, culprit="aliases"),
    InputCase("images-md-platforms-alias",
              "release: 1.0\nplatforms: &p [linux/amd64]\nimages:\n  - name: a\n    source: x/a:1\n"
              "    platforms: *p\n", culprit="IMAGES.md:9: invalid YAML in the airgap block: aliases"),
    InputCase("images-md-platforms-nested", "release: 1.0\nplatforms: [[linux/amd64, [x]]]\nimages:\n  - name: a\n"
              "    source: x/a:1\n", culprit="platforms: entries are OS/ARCH"),
    InputCase("images-md-deep", "release: 1.0\nimages:\n  - name: a\n    source: x/a:1\nx: " + "[" * 2000 +
              "]" * 2000 + "\n", culprit="nested deeper than"),
    InputCase("images-md-huge", raw=b"# x\n" + b"prose " * (2 << 20), culprit="over the 8388608-byte limit"),
    InputCase("images-md-host-in-name", "release: 1.0\nimages:\n  - name: docker.io/evil\n    source: x/a:1\n",
              culprit="image name 'docker.io/evil' starts with a registry host"),
    InputCase("images-md-dotdot-name", "release: 1.0\nimages:\n  - name: ../evil\n    source: x/a:1\n",
              culprit="image name '../evil'"),
    InputCase("chart-yaml-alias-bomb", "release: 1.0\nimages:\n  - name: a\n    source: x/a:1\n",
              chart=ALIAS_BOMB, culprit="aliases"),
]


@pytest.mark.parametrize("case", INPUT_CASES, ids=[c.id for c in INPUT_CASES])
def test_hostile_input_is_refused(case: InputCase, tmp_path: Path):
    md = tmp_path / "IMAGES.md"
    md.write_bytes(case.raw if case.raw is not None else
                   ("# Images\n\n```yaml airgap\n" + case.block + "```\n").encode())
    args = ["bundle", "--images", str(md), "-o", str(tmp_path / "out" / "b.tar"), "--store", str(tmp_path / "store")]
    if case.chart is not None:
        chart = make_chart(tmp_path / "chart")
        (chart / "Chart.yaml").write_bytes(case.chart)
        args += ["--chart", str(chart)]
    else:
        args.append("--no-chart")
    work = tmp_path / "work"
    work.mkdir()
    run = run_measured(args, cwd=work)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2, run.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("airgap: error: "), run.stderr[-2000:]
    assert case.culprit in lines[0], lines[0]
    assert run.max_rss < MAX_RSS and run.seconds < MAX_SECONDS
    assert not (tmp_path / "out").exists() and tree(work) == set()
