"""A first load into a registry asks its catalog once instead of looking up tags that cannot exist.

Into repositories that do not exist yet, every tag lookup is a request the registry answers 404 (the
image's tag, each signature's ``sha256-<hex>.sig``, then the tag listing): three per image, a fifth of
a small image's requests. The catalog tells which repositories exist in one request. A catalog that is
refused changes nothing, and one that lacks a repository the load knows exists (the release record's)
is partial and not believed: images the target holds are still found there.

A real Distribution registry behind a recording proxy (tests/support/http_proxy.py) whose hook can
answer the catalog itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import airgap, keypair, load_args, write_images_md
from http_proxy import Proxy, Reply
from synth import LayerSpec, add_image

PW = {"COSIGN_PASSWORD": "first-load-pw"}
NAMES = ["alpha", "beta", "gamma"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """(public key, bundle of three images, the same plus a fourth)."""
    tmp = tmp_path_factory.mktemp("first")
    key = keypair(tmp, PW["COSIGN_PASSWORD"])
    layout = tmp / "src"
    for k, name in enumerate(NAMES + ["delta"]):  # a shared base layer each, as images have
        add_image(layout, name, layers=[LayerSpec(size=128 << 10, seed=500), LayerSpec(size=16 << 10, seed=501 + k)])

    def make(name, images):
        md = write_images_md(tmp / f"{name}.md", "0.1.0", [{"name": n, "source": f"oci:{layout}:{n}"} for n in images])
        out = tmp / f"{name}.tar"
        airgap("bundle", "--images", str(md), "-o", str(out), "--no-chart", "--no-crds", "--no-tools",
               "--store", str(tmp / "store"), "--key", f"{key}.key", env=PW)
        return out

    return Path(f"{key}.pub"), make("three", NAMES), make("four", NAMES + ["delta"])


class Catalog:
    """A proxy in front of the registry recording (method, path); ``answer`` replaces its catalog."""

    def __init__(self, upstream: str):
        self.seen: list[tuple[str, str]] = []
        self.answer: Reply | None = None
        self.proxy = Proxy(upstream, hook=self._hook, after=lambda req, _: self.seen.append((req.method, req.path)))
        self.host = self.proxy.host

    def _hook(self, req):
        if self.answer is not None and req.path.startswith("/v2/_catalog"):
            self.seen.append((req.method, req.path))
            return self.answer
        return None

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc) -> None:
        self.proxy.stop()

    def load(self, bundle, key, tmp_path) -> dict:
        self.seen = []
        out = airgap(*load_args(bundle, self.host, "first", "--json", "--values-out", str(tmp_path / "values.yaml"),
                                key=key))
        return json.loads(out.stdout)


@pytest.fixture
def target(registry):
    with Catalog(f"http://{registry.host}") as cat:
        yield cat


def _tag_lookups(seen):
    """Requests that ask an image repository about its tags (HEAD of a manifest, a tag listing)."""
    return [(m, p) for m, p in seen if "/airgap-releases/" not in p
            and ((m == "HEAD" and "/manifests/" in p) or "/tags/list" in p)]


def test_a_first_load_asks_the_catalog_once_and_no_tag_of_a_new_repository(bundles, target, tmp_path):
    key, three, _ = bundles
    report = target.load(three, key, tmp_path)
    assert {i["status"] for i in report["images"] + report["signatures"]} == {"copied"}
    assert [p for _, p in target.seen if p.startswith("/v2/_catalog")] == ["/v2/_catalog?n=1000"]
    assert _tag_lookups(target.seen) == []
    # Small blobs of a new repository go without a HEAD first, as into any repository with no tag.
    assert not [p for m, p in target.seen if m == "HEAD" and "/blobs/" in p]

    again = target.load(three, key, tmp_path)  # a reload: every repository exists, no catalog asked
    assert {i["status"] for i in again["images"] + again["signatures"]} == {"present"}
    assert not [p for _, p in target.seen if p.startswith("/v2/_catalog")]


@pytest.mark.parametrize("answer", [
    Reply(404, {"Content-Type": "application/json"}, b'{"errors":[{"code":"UNSUPPORTED"}]}'),
    Reply(401, {"Content-Type": "application/json"}, b'{"errors":[{"code":"UNAUTHORIZED"}]}'),
], ids=["no-catalog", "catalog-refused"])
def test_without_a_catalog_tags_are_looked_up_as_before(bundles, target, tmp_path, answer):
    key, three, _ = bundles
    target.answer = answer
    report = target.load(three, key, tmp_path)
    assert {i["status"] for i in report["images"] + report["signatures"]} == {"copied"}
    assert {p.split("/")[3] for _, p in _tag_lookups(target.seen)} == set(NAMES)


def test_a_catalog_missing_a_repository_known_to_exist_is_not_believed(bundles, target, tmp_path):
    key, three, four = bundles
    target.load(three, key, tmp_path)
    # A filtered or capped catalog: it lists none of what the first load wrote, not even the record.
    target.answer = Reply(200, {"Content-Type": "application/json"}, b'{"repositories":["first/other"]}')
    report = target.load(four, key, tmp_path)
    status = {i["name"]: i["status"] for i in report["images"]}
    assert status == {**{n: "present" for n in NAMES}, "delta": "copied"}
    assert not [p for m, p in target.seen if m == "PUT" and "/manifests/" in p and "/delta/" not in p
                and "/airgap-releases/" not in p]
