"""Synthetic OCI images for tests and benchmarks, written straight into an OCI image layout.

Nothing here needs a container runtime, a network or a third-party package: layers are tars holding
one file of deterministic pseudo-random bytes, generated and hashed in 1 MiB chunks so a multi-GB
layer never sits in memory. The same ``LayerSpec`` always yields the same blob, which is how tests get
a base layer shared by several images (the interesting case for a de-duplicating loader).

Layout produced (OCI image-layout spec v1.0)::

    LAYOUT/oci-layout                {"imageLayoutVersion": "1.0.0"}
    LAYOUT/index.json                one entry per ref, annotated org.opencontainers.image.ref.name
    LAYOUT/blobs/sha256/<hex>        layers, configs, manifests, indexes

Any such layout is readable by ``skopeo ... oci:LAYOUT:REF``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import queue
import random
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

__all__ = [
    "LayerSpec",
    "add_image",
    "make_corpus",
    "random_chunks",
    "MEDIA_TYPE_MANIFEST",
    "MEDIA_TYPE_INDEX",
    "MEDIA_TYPE_CONFIG",
    "MEDIA_TYPE_LAYER",
    "MEDIA_TYPE_LAYER_GZIP",
    "REF_NAME_ANNOTATION",
]

MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

CHUNK = 1 << 20
# A fixed timestamp keeps configs (and therefore manifest digests) reproducible across runs.
EPOCH = "1970-01-01T00:00:00Z"
DEFAULT_PLATFORMS = ["linux/amd64", "linux/arm64"]


@dataclass(frozen=True)
class LayerSpec:
    """A layer that is a tar holding one file of ``size`` pseudo-random bytes derived from ``seed``.

    Equal specs give byte-identical blobs, in any layout, on any run.
    """

    size: int
    seed: int
    compressed: bool = False

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"layer size must be >= 0, got {self.size}")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class _Layer:
    descriptor: Descriptor
    diff_id: str  # sha256 of the uncompressed tar, what the config's rootfs lists


@dataclass(frozen=True)
class _Platform:
    os: str
    architecture: str
    variant: str | None

    @classmethod
    def parse(cls, text: str) -> "_Platform":
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"platform must look like os/arch[/variant], got {text!r}")
        variant = parts[2] if len(parts) == 3 else None
        # Registries and runtimes expect arm64 to carry variant v8 (as docker and buildx emit it).
        if variant is None and parts[1] == "arm64":
            variant = "v8"
        return cls(parts[0], parts[1], variant)

    def to_json(self) -> dict:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out


# ---------------------------------------------------------------------------------------------
# random data


def random_chunks(seed: int, size: int, chunk: int = CHUNK):
    """Yield ``size`` deterministic, incompressible bytes in pieces of at most ``chunk`` bytes.

    Mersenne Twister's randbytes runs at ~450 MB/s here, faster than shake_256 in counter mode,
    and its output for a given seed is fixed by the CPython docs (reproducible across versions).
    A prefix property also holds: the first N bytes of a seed's stream never depend on ``size``.
    """
    rng = random.Random(seed)
    left = size
    while left > 0:
        n = min(chunk, left)
        yield rng.randbytes(n)
        left -= n


def _derive_seed(*parts: object) -> int:
    # Mixing through a hash keeps derived seeds apart even when the inputs are small neighbours.
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


# ---------------------------------------------------------------------------------------------
# blob writing


class _HashingWriter:
    """File-like sink that hashes and counts what passes through it on the way to ``out``."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.sha.update(data)
        self._out.write(data)
        n = len(data)
        self.size += n
        return n

    def flush(self) -> None:
        self._out.flush()


class _BlobStore:
    def __init__(self, layout: Path) -> None:
        self.dir = layout / "blobs" / "sha256"
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or len(hexpart) != 64:
            raise ValueError(f"unsupported digest {digest!r}")
        return self.dir / hexpart

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def _tempfile(self):
        # Same directory as the final blob so os.replace is an atomic rename, never a copy.
        return tempfile.NamedTemporaryFile(dir=self.dir, prefix=".tmp-", delete=False)

    def _commit(self, tmp_name: str, digest: str) -> None:
        # NamedTemporaryFile creates 0600; blobs are content, readable by any local tool or user.
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, self.path(digest))

    def put_bytes(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self.has(digest):
            return digest
        with self._tempfile() as f:
            f.write(data)
            name = f.name
        self._commit(name, digest)
        return digest

    def put_layer(self, spec: LayerSpec) -> _Layer:
        with self._tempfile() as f:
            name = f.name
            try:
                if spec.compressed:
                    blob = _HashingWriter(f)
                    # filename="" and mtime=0: gzip would otherwise embed the temp name and clock.
                    with gzip.GzipFile(filename="", mode="wb", fileobj=blob, compresslevel=1, mtime=0) as gz:
                        tar = _HashingWriter(gz)
                        _write_layer_tar(tar, spec)
                else:
                    # Uncompressed: the blob is the tar, so one hash serves as digest and diff_id.
                    blob = tar = _HashingWriter(f)
                    _write_layer_tar(tar, spec)
            except BaseException:
                f.close()
                os.unlink(name)
                raise
        digest = "sha256:" + blob.sha.hexdigest()
        self._commit(name, digest)
        media_type = MEDIA_TYPE_LAYER_GZIP if spec.compressed else MEDIA_TYPE_LAYER
        return _Layer(Descriptor(media_type, digest, blob.size), "sha256:" + tar.sha.hexdigest())


def _write_layer_tar(out: _HashingWriter, spec: LayerSpec) -> None:
    info = tarfile.TarInfo(f"synth/layer-{spec.seed}.bin")
    info.size = spec.size
    info.mode = 0o644
    info.mtime = 0
    info.uname = info.gname = "root"
    # PAX lifts ustar's 8 GiB member limit; for smaller sizes it writes a plain ustar header.
    out.write(info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape"))
    for piece in _prefetch(random_chunks(spec.seed, spec.size)):
        out.write(piece)
    pad = -spec.size % tarfile.BLOCKSIZE
    # Two zero blocks end the archive; tar readers stop there.
    out.write(b"\0" * (pad + 2 * tarfile.BLOCKSIZE))


def _prefetch(chunks: Iterator[bytes], depth: int = 4) -> Iterator[bytes]:
    """Run ``chunks`` in a helper thread, at most ``depth`` items ahead of the consumer.

    randbytes holds the GIL, while sha256, zlib and file writes release it for large buffers, so
    generating the next MiB overlaps hashing and writing the previous one (~190 -> ~350 MB/s end to end on
    two cores). The bounded queue keeps memory at a few MiB whatever the layer size.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in chunks:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # surfaced in the consumer thread
            q.put(exc)

    worker = threading.Thread(target=produce, name="synth-random", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        # The consumer may stop early (error while writing): let the producer exit, not block.
        stop.set()
        worker.join()


# Layers are expensive to make (seconds per GB) and fully determined by their spec, so remember
# what was written to which layout during this process; the blob file must still exist to reuse it.
_layer_memo: dict[tuple[str, LayerSpec], _Layer] = {}


def _ensure_layer(store: _BlobStore, spec: LayerSpec) -> _Layer:
    key = (str(store.dir.resolve()), spec)
    hit = _layer_memo.get(key)
    if hit is not None and store.has(hit.descriptor.digest):
        return hit
    layer = store.put_layer(spec)
    _layer_memo[key] = layer
    return layer


def _canonical(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


# ---------------------------------------------------------------------------------------------
# layout


def _init_layout(layout: Path) -> None:
    layout.mkdir(parents=True, exist_ok=True)
    marker = layout / "oci-layout"
    if not marker.exists():
        marker.write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    if not (layout / "index.json").exists():
        _write_json_atomic(layout / "index.json", _empty_index())


def _empty_index() -> dict:
    return {"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": []}


def _write_json_atomic(path: Path, obj: dict) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".tmp-", delete=False) as f:
        json.dump(obj, f, indent=2)
        name = f.name
    os.replace(name, path)


def _write_image_manifest(
    store: _BlobStore,
    platform: _Platform,
    layers: list[_Layer],
    labels: dict,
    seed: int,
) -> Descriptor:
    config = {
        "created": EPOCH,
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", f"SYNTH_SEED={seed}"],
            "Labels": dict(labels),
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [
            {"created": EPOCH, "created_by": f"airgap.synth layer {i} ({layer.descriptor.size} bytes)"}
            for i, layer in enumerate(layers)
        ],
    }
    if platform.variant:
        config["variant"] = platform.variant
    config_bytes = _canonical(config)
    config_digest = store.put_bytes(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": Descriptor(MEDIA_TYPE_CONFIG, config_digest, len(config_bytes)).to_json(),
        "layers": [layer.descriptor.to_json() for layer in layers],
    }
    data = _canonical(manifest)
    return Descriptor(MEDIA_TYPE_MANIFEST, store.put_bytes(data), len(data))


def add_image(
    layout: Path,
    ref: str,
    *,
    layers: list[LayerSpec],
    platforms: list[str] | None = None,
    labels: dict | None = None,
    seed: int = 0,
) -> str:
    """Write a synthetic image into the OCI layout ``layout`` under ``ref``; return its digest.

    With zero or one platform (default ``linux/amd64``) the result is an image manifest. With two or
    more it is an OCI image index with one manifest per platform. The first platform uses ``layers``
    as given; every further platform gets layers of the same sizes but content derived from the
    platform name, as real multi-arch images have distinct per-arch layers.

    ``seed`` goes into the image config, so two images with identical layers still get distinct
    manifests. An existing index.json entry with the same ref is replaced (its blobs stay).
    """
    layout = Path(layout)
    _init_layout(layout)
    store = _BlobStore(layout)
    plats = [_Platform.parse(p) for p in (platforms or ["linux/amd64"])]
    labels = dict(labels or {})

    children: list[tuple[_Platform, Descriptor]] = []
    for i, plat in enumerate(plats):
        specs = layers if i == 0 else [
            LayerSpec(s.size, _derive_seed(s.seed, plat.os, plat.architecture, plat.variant), s.compressed)
            for s in layers
        ]
        built = [_ensure_layer(store, s) for s in specs]
        children.append((plat, _write_image_manifest(store, plat, built, labels, seed)))

    if len(children) == 1:
        top = children[0][1]
    else:
        index = {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": [dict(desc.to_json(), platform=plat.to_json()) for plat, desc in children],
        }
        data = _canonical(index)
        top = Descriptor(MEDIA_TYPE_INDEX, store.put_bytes(data), len(data))

    index_path = layout / "index.json"
    root = json.loads(index_path.read_text())
    entries = [
        m for m in root.get("manifests", []) if (m.get("annotations") or {}).get(REF_NAME_ANNOTATION) != ref
    ]
    entry = top.to_json()
    if len(children) == 1:
        entry["platform"] = children[0][0].to_json()
    entry["annotations"] = {REF_NAME_ANNOTATION: ref}
    entries.append(entry)
    root.update(schemaVersion=2, mediaType=MEDIA_TYPE_INDEX, manifests=entries)
    _write_json_atomic(index_path, root)
    return top.digest


def make_corpus(
    layout: Path,
    *,
    total_bytes: int,
    images: int = 6,
    base_bytes: int,
    seed: int = 0,
    gzip_images: int = 0,
    gzip_layer_bytes: int = 8 << 20,
) -> list[str]:
    """Fill ``layout`` with ``images`` single-platform images ``img1..imgN``; return their refs.

    Every image starts with the same uncompressed base layer of ``base_bytes`` (stored once) and
    adds two layers of its own (2/3 and 1/3 of its share), so unique blob bytes come to about
    ``total_bytes``. The first ``gzip_images`` images also get a small gzip layer of
    ``gzip_layer_bytes`` (counted in the total): gzip of random data runs at ~45 MB/s, so keep it small.
    """
    if images < 1:
        raise ValueError("images must be >= 1")
    if base_bytes >= total_bytes:
        raise ValueError("base_bytes must be smaller than total_bytes")
    gz_total = min(gzip_images, images) * gzip_layer_bytes
    own_total = total_bytes - base_bytes - gz_total
    if own_total < images:
        raise ValueError("total_bytes leaves no room for per-image layers")
    per_image = own_total // images
    base = LayerSpec(base_bytes, _derive_seed(seed, "base"))
    refs = []
    for n in range(1, images + 1):
        big = per_image * 2 // 3
        specs = [
            base,
            LayerSpec(big, _derive_seed(seed, n, "a")),
            LayerSpec(per_image - big, _derive_seed(seed, n, "b")),
        ]
        if n <= gzip_images:
            specs.append(LayerSpec(gzip_layer_bytes, _derive_seed(seed, n, "gz"), compressed=True))
        ref = f"img{n}"
        add_image(layout, ref, layers=specs, labels={"airgap.synth/image": ref}, seed=_derive_seed(seed, n))
        refs.append(ref)
    return refs
