"""IMAGES.md, references and digests: bad input gets a one-line error naming the file and line."""

from __future__ import annotations

import pytest

from airgap import imagesfile
from airgap.errors import DigestMismatch, InputError
from airgap.model import DigestingReader, Platform, Reference, sha256_digest
from airgap.model.manifest import parse_manifest
from helpers import REPO, airgap


def _md(tmp_path, block: str, before: str = "# Title\n\nSome prose.\n\n"):
    p = tmp_path / "IMAGES.md"
    p.write_text(before + "```yaml airgap\n" + block + "```\n")
    return p


def test_block_is_found_and_parsed(tmp_path):
    f = imagesfile.load(_md(tmp_path, "release: 1.2.3\nimages:\n  - name: opensearch\n"
                                      "    source: docker.io/opensearchproject/opensearch:2.18.0\n"
                                      "    values: opensearch.image\n"
                                      "crds:\n  - path: crds/a.yaml\n"))
    assert f.release == "1.2.3"
    assert f.images[0].name == "opensearch" and f.images[0].line == 8 and f.images[0].values == "opensearch.image"
    assert f.crds[0].path == "crds/a.yaml"


@pytest.mark.parametrize("block, line, words", [
    ("release: 1.0\nimages:\n  - name: a\n    source: docker.io/x/a:1\n  - name: a\n    source: docker.io/x/b:1\n",
     10, "already used on line 8"),
    ("release: 1.0\nimages:\n  - name: a\n", 8, "exactly one of source"),
    ("release: 1.0\nimages:\n  - name: a\n    source: docker.io/x/a:1\n    colour: red\n", 10, "unknown key 'colour'"),
    ("release: 1.0\nimages:\n  - name: Bad Name\n    source: x\n", 8, "not a valid repository"),
    ("release: 1.0\nimages:\n  - name: a\n    source: docker.io/x/A:1\n", 8, "bad repository"),
    ("release: 1.0\nimages:\n  - name: a\n    source: x:1\n    values: 'not a path'\n", 8, "dotted path"),
    ("release: 1.0\nimages:\n  - name: a\n   source: oops\n", 9, "invalid YAML"),
    ("release: 1.0\nimages:\n  - name: a\n    source: x:1\ncrds:\n  - url: https://h/c.yaml\n", 11, "sha256"),
])
def test_errors_name_file_and_line(tmp_path, block, line, words):
    path = _md(tmp_path, block)
    with pytest.raises(InputError) as exc:
        imagesfile.load(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}:{line}:"), msg
    assert words in msg


def test_missing_block_and_missing_file(tmp_path):
    p = tmp_path / "IMAGES.md"
    p.write_text("# nothing machine readable here\n")
    with pytest.raises(InputError, match="no ```yaml airgap block"):
        imagesfile.load(p)
    proc = airgap("bundle", "--images", str(tmp_path / "missing.md"), "-o", str(tmp_path / "b.tar"), check=False)
    assert proc.returncode == 2 and "missing.md: file not found" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_reports_the_line(tmp_path):
    path = _md(tmp_path, "release: 1.0\nimages:\n  - name: a\n    build: {dockerfile: x}\n")
    proc = airgap("bundle", "--images", str(path), "-o", str(tmp_path / "b.tar"), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"airgap: error: {path}:8: image a: build: needs context:"
    assert not (tmp_path / "b.tar").exists()


def test_repository_images_md_parses():
    f = imagesfile.load(REPO / "IMAGES.md")
    names = {i.name for i in f.images}
    assert {"haystack-query", "haystack-indexing", "haystack-frontend", "opensearch"} <= names
    assert all(i.values for i in f.images if i.name != "traefik")


@pytest.mark.parametrize("text, expected", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("opensearchproject/opensearch:2.18.0", "docker.io/opensearchproject/opensearch:2.18.0"),
    ("quay.io/prometheuscommunity/elasticsearch-exporter:v1.8.0", None),
    ("127.0.0.1:5000/a/b@sha256:" + "a" * 64, None),
    ("localhost/x:1", None),
])
def test_references(text, expected):
    assert str(Reference.parse(text)) == (expected or text)


def test_bad_references_and_platforms():
    for bad in ("UPPER/case:1", "a:b:c:d", "x@sha256:short", ""):
        with pytest.raises(InputError):
            Reference.parse(bad)
    assert Platform.parse("linux/arm64").matches(Platform("linux", "arm64", "v8"))
    assert not Platform.parse("linux/arm64/v7").matches(Platform("linux", "arm64", "v8"))
    with pytest.raises(InputError, match="OS/ARCH"):
        Platform.parse("amd64")


def test_digesting_reader_refuses_before_the_last_chunk():
    data = [b"a" * 10, b"b" * 10]
    good = sha256_digest(b"".join(data))
    assert b"".join(DigestingReader(iter(data), good, 20, "x")) == b"".join(data)
    seen = []
    with pytest.raises(DigestMismatch):
        for chunk in DigestingReader(iter([b"a" * 10, b"c" * 10]), good, 20, "blob x"):
            seen.append(chunk)
    assert seen == [b"a" * 10]  # the consumer never got the bad last chunk, so it cannot commit it
    with pytest.raises(DigestMismatch, match="truncated"):
        list(DigestingReader(iter([b"a" * 10]), good, 20, "blob x"))


def test_manifest_parsing_rejects_junk():
    with pytest.raises(InputError, match="not valid JSON"):
        parse_manifest(b"{", None)
    with pytest.raises(InputError, match="schema 1"):
        parse_manifest(b'{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+json"}')
    with pytest.raises(InputError, match="4 MiB"):
        parse_manifest(b" " * (5 << 20))


def test_images_md_crd_pin_matches_the_lock_file():
    import yaml
    lock = yaml.safe_load((REPO / "manifests/crds/traefik-crds.lock.yaml").read_text())["crds"]
    f = imagesfile.load(REPO / "IMAGES.md")
    assert {(c.url, c.sha256) for c in f.crds} == {(c["url"], c["sha256"]) for c in lock}


@pytest.mark.parametrize("block, words", [
    ("release: 1.0\nimages:\n  - name: a\n    source: x/a:1\n    tag: \"t\u00e4g\"\n", "not a valid tag"),
    ("release: 1.0\nimages:\n  - name: a\n    source: x/a:1\n    values: q.image\n"
     "  - name: b\n    source: x/b:1\n    values: q.image.sidecar\n", "sits inside q.image"),
    ("release: 1.0\nimages:\n  - name: a\n    source: x/a:1\n    values: image\n", "top-level image"),
    ("release: 1.0\nimages:\n  - name: a\n    source: x/a:1\ncrds:\n  - path: [a]\n", "plain text"),
    ("release: 1.0\nimages:\n  - {[a]: b}\n", "plain words"),
])
def test_more_bad_blocks_are_one_line_errors(tmp_path, block, words):
    path = _md(tmp_path, block)
    proc = airgap("bundle", "--images", str(path), "-o", str(tmp_path / "b.tar"), check=False)
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_bad_paths_and_environment_are_one_line_errors(tmp_path):
    md = _md(tmp_path, "release: 1.0\nimages:\n  - name: a\n    source: oci:x:a\n")
    cases = [
        (["bundle", "--images", str(md), "-o", "/proc/nope/x.tar", "--no-chart"], {}, None),
        (["bundle", "--images", str(md), "-o", str(tmp_path / "b.tar"), "--split", "inf"], {}, "--split"),
        (["bundle", "--images", str(md), "-o", str(tmp_path / "b.tar"), "--no-chart"], {"SOURCE_DATE_EPOCH": "abc"},
         "SOURCE_DATE_EPOCH"),
        (["load", str(md), "--registry", "127.0.0.1:abc", "--insecure-skip-verify"], {}, "expected HOST"),
    ]
    for args, env, words in cases:
        proc = airgap(*args, env=env, check=False)
        assert proc.returncode != 0 and proc.returncode != 70, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
        if words:
            assert words in proc.stderr
