"""`docker save` archives imported into the local store (airgap.build.archive), in process.

The archive is the legacy shape Docker <= 24 writes (``<id>/layer.tar``, ``<id>.json``); skopeo
reads it first (so it is a real one), and reads the imported OCI layout back. The import goes
through the layout store's own put_blob/put_manifest: a failed check leaves the store as it was.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from conftest import run_skopeo

from airgap.build.archive import import_docker_archive
from airgap.errors import BuildError
from airgap.places.layout import LayoutStore


def _layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1700000000, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _docker_archive(path: Path, layers: list[bytes], diff_ids: list[str] | None = None) -> Path:
    """A docker-archive as Docker <= 24 saves it; ``diff_ids`` overrides the config's (to break it)."""
    ids = diff_ids or ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/app"]},
                         "rootfs": {"type": "layers", "diff_ids": ids},
                         "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "COPY"}] * len(layers)}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    members = {config_name: config}
    names = []
    for layer in layers:
        name = f"{hashlib.sha256(layer).hexdigest()}/layer.tar"
        members[name] = layer
        names.append(name)
    members["manifest.json"] = json.dumps([{"Config": config_name, "RepoTags": ["app:1"], "Layers": names}]).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_ino for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def work(tmp_path: Path) -> tuple[Path, LayoutStore]:
    (tmp_path / "cache").mkdir()
    return tmp_path, LayoutStore(tmp_path / "cache" / "store", create=True)


def test_imported_archive_is_a_layout_skopeo_reads_with_the_layers_docker_saved(work):
    tmp, store = work
    layers = [_layer({"app/greeting.txt": b"hello\n"}), _layer({"app/run.txt": b"made-by-run\n" * 1000})]
    archive = _docker_archive(tmp / "save.tar", layers)
    assert json.loads(run_skopeo("inspect", f"docker-archive:{archive}").stdout)["Layers"]  # a real docker-archive

    digest = import_docker_archive(archive, store, "app:1", epoch=1700000000)

    config = json.loads(run_skopeo("inspect", "--config", f"oci:{store.root}:app:1").stdout)
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    assert config["created"] == "2023-11-14T22:13:20Z"
    out = tmp / "pulled"
    run_skopeo("copy", f"oci:{store.root}:app:1", f"dir:{out}")
    manifest = json.loads((out / "manifest.json").read_bytes())
    assert hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest() == digest.hex
    got = [gzip.decompress((out / d["digest"].split(":")[1]).read_bytes()) for d in manifest["layers"]]
    assert got == layers
    # Only the layout's own files in the store, and no scratch file left beside it.
    assert {p.split("/")[0] for p in _tree(store.root)} == {"oci-layout", "index.json", "blobs"}
    assert sorted(p.name for p in (tmp / "cache").iterdir()) == ["store"]


def test_a_layer_that_does_not_match_its_diff_id_leaves_the_store_as_it_was(work):
    tmp, store = work
    good = _layer({"a.txt": b"a"})
    import_docker_archive(_docker_archive(tmp / "ok.tar", [good]), store, "ok:1")
    before = _tree(store.root)
    bad = _docker_archive(tmp / "bad.tar", [good, _layer({"b.txt": b"b" * 5000})], diff_ids=[
        "sha256:" + hashlib.sha256(good).hexdigest(), "sha256:" + "0" * 64])
    with pytest.raises(BuildError, match=r"bad\.tar: layer [0-9a-f]{64}/layer\.tar has digest sha256:[0-9a-f]{64}, "
                                         r"the config says sha256:0{64}"):
        import_docker_archive(bad, store, "bad:1")
    assert _tree(store.root) == before
    assert store.tags() == ["ok:1"]
    assert sorted(p.name for p in (tmp / "cache").iterdir()) == ["store"]


def test_reimporting_the_same_image_writes_no_blob_again(work):
    tmp, store = work
    archive = _docker_archive(tmp / "save.tar", [_layer({"big.bin": bytes(range(256)) * 4096})])
    first = import_docker_archive(archive, store, "app:1")
    before = _tree(store.root)
    assert import_docker_archive(archive, store, "app:2") == first
    after = _tree(store.root)
    assert {k: v for k, v in after.items() if k.startswith("blobs/")} == \
        {k: v for k, v in before.items() if k.startswith("blobs/")}
    assert set(store.tags()) == {"app:1", "app:2"}
