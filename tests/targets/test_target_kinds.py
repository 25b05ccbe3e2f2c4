"""Target kinds are objects in one registry: a new kind is one module dropped into the kinds package,
and `load` (in-process, through the CLI) detects it, opens the target through it, lets it prepare the
repositories and follows its quirks; a real Distribution registry is the data plane."""

from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner
from helpers import airgap, demo_bundle_parts, write_images_md

from airgap.cli import cli
from airgap.errors import InputError
from airgap.model.manifest import parse_manifest
from airgap.registry.client import RegistryClient, RegistryOptions, Target
from synth import LayerSpec, add_image
from airgap.targets import kind, kinds, open_target
from airgap.targets.plan import TagConflict

TINY = '''
from airgap.targets.base import TargetKind

PREPARED = []


class Tiny(TargetKind):
    """A registry whose repositories must be announced first and whose tags never move."""
    name = "tiny"
    title = "Tiny test registry"
    order = 5
    mount = False
    provisions = True

    def detect_name(self, target):
        return "the prefix starts with tiny/" if target.prefix.startswith("tiny/") else None

    def prepare(self, opened, repositories, create_namespaces, progress):
        PREPARED.append(sorted(set(repositories)))
        return sorted(set(repositories))

    def tags_immutable(self, opened, repository):
        return True


KIND = Tiny()
'''


@pytest.fixture
def tiny_kind(tmp_path, monkeypatch):
    """The kinds package with one more directory on its path holding tiny.py, discovered afresh."""
    extra = tmp_path / "extra_kinds"
    extra.mkdir()
    (extra / "tiny.py").write_text(textwrap.dedent(TINY))
    monkeypatch.setattr(kinds, "__path__", [*kinds.__path__, str(extra)])
    monkeypatch.setattr(kinds, "_KINDS", {})
    monkeypatch.setattr(kinds, "_discovered", False)
    yield
    import sys
    sys.modules.pop("airgap.targets.kinds.tiny", None)


def test_builtin_kinds_are_the_modules_of_the_package():
    assert kinds.names()[-1] == "generic"  # the fallback, asked last
    assert set(kinds.names()) == {"generic", "harbor", "ecr", "nexus"}
    with pytest.raises(InputError, match="unknown target kind 'quay'.*one of auto, "):
        kind("quay")


def test_a_new_kind_is_one_file_and_load_uses_it(tiny_kind, registry, tmp_path):
    assert "tiny" in kinds.names()
    path, _, digests = demo_bundle_parts(tmp_path)
    runner = CliRunner()
    args = ["load", "--insecure-skip-verify", str(path), "--registry", f"{registry.host}/tiny/app",
            "--insecure-registry", "--values-out", str(tmp_path / "v.yaml"), "--json"]
    result = runner.invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["target"]["kind"] == "tiny" and report["target"]["reason"] == "the prefix starts with tiny/"
    from airgap.targets.kinds import tiny  # the module discovery imported
    assert tiny.PREPARED == [["tiny/app/haystack-indexing", "tiny/app/haystack-query", "tiny/app/opensearch"]]
    assert report["target"]["created"] == tiny.PREPARED[0]
    # query and indexing share a layer: a kind without mount uploads it twice, never asks to mount it
    assert report["blobs_mounted"] == 0
    assert registry.manifest_digest("tiny/app/opensearch", "2.18.0") == digests["opensearch"]
    # --target offers it too; its tags never move: a bundle moving haystack-query:0.1.0 is refused
    # before anything is pushed, naming the kind
    layout = tmp_path / "other"
    add_image(layout, "query", layers=[LayerSpec(size=1 << 20, seed=999)])
    md = write_images_md(tmp_path / "OTHER.md", "0.1.0", [{"name": "haystack-query", "source": f"oci:{layout}:query"}])
    airgap("bundle", "--images", str(md), "-o", str(tmp_path / "other.tar"), "--no-chart",
           "--store", str(tmp_path / "store2"))
    moved = [*args, "--target", "tiny"]
    moved[2] = str(tmp_path / "other.tar")
    with pytest.raises(TagConflict, match=r"\(Tiny test registry\) does not let these tags move.*"
                                          r"tiny/app/haystack-query:0.1.0 points at"):
        runner.invoke(cli, moved, catch_exceptions=False)
    assert registry.manifest_digest("tiny/app/haystack-query", "0.1.0") == digests["query"]
    helped = runner.invoke(cli, ["load", "--help"])
    assert "auto|tiny|ecr|harbor|nexus|generic" in helped.output


def test_unknown_kind_on_the_command_line_is_a_usage_error():
    result = CliRunner().invoke(cli, ["probe", "--registry", "127.0.0.1:9", "--target", "quay"])
    assert result.exit_code == 2 and "'quay' is not one of auto, " in result.output


def test_nexus_refuses_an_index_without_media_type_before_any_push():
    index = parse_manifest(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "a" * 64,
        "size": 2}]}).encode(), "application/vnd.oci.image.index.v1+json")
    opened = open_target(Target("127.0.0.1:9", "hosted/x"), RegistryOptions(insecure=True), "nexus")
    try:
        with pytest.raises(InputError, match="image app: its image index has no top-level mediaType"):
            opened.check_manifest(index, "image app")
    finally:
        opened.close()
    generic = open_target(Target("127.0.0.1:9"), RegistryOptions(insecure=True), "generic")
    try:
        generic.check_manifest(index, "image app")  # any other registry stores it as it is
    finally:
        generic.close()
    assert isinstance(generic.client, RegistryClient) and generic.store("a").mount is True
