"""Synthetic OCI images for the tests, the benchmark and the demo, written into an OCI image layout.

Support code, not part of the shipped package: the images are described with airgap's own content
model (``airgap.model``) and written through the layout place (``airgap.places.layout.LayoutStore``),
so there is one OCI implementation; what this module adds is only how to make layer bytes.

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

from airgap.fsutil import atomic_write
from airgap.model import Descriptor, Digest, MediaType, Platform, parse_manifest
from airgap.model.manifest import Manifest
from airgap.places.layout import LayoutStore

__all__ = ["LayerSpec", "add_image", "make_corpus", "random_chunks"]

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
class _Layer:
    descriptor: Descriptor
    diff_id: str  # sha256 of the uncompressed tar, what the config's rootfs lists


def _platform(text: str) -> Platform:
    platform = Platform.parse(text)
    # Registries and runtimes expect arm64 to carry variant v8 (as docker and buildx emit it).
    if not platform.variant and platform.architecture == "arm64":
        platform = Platform(platform.os, platform.architecture, "v8")
    return platform


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
    """Layers and configs into a LayoutStore's blob directory; manifests go through the store itself."""

    def __init__(self, layout: Path) -> None:
        self.store = LayoutStore(layout, create=True)
        self.dir = self.store.root / "blobs" / "sha256"

    def path(self, digest: Digest) -> Path:
        return self.store.blob_path(digest)

    def has(self, digest: Digest) -> bool:
        return self.path(digest).is_file()

    def _tempfile(self):
        # Same directory as the final blob so os.replace is an atomic rename, never a copy.
        return tempfile.NamedTemporaryFile(dir=self.dir, prefix=".tmp-", delete=False)

    def _commit(self, tmp_name: str, digest: Digest) -> None:
        # NamedTemporaryFile creates 0600; blobs are content, readable by any local tool or user.
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, self.path(digest))

    def put_bytes(self, data: bytes, media_type: str) -> Descriptor:
        desc = Descriptor(media_type, Digest.parse("sha256:" + hashlib.sha256(data).hexdigest()), len(data))
        if not self.has(desc.digest):
            atomic_write(self.path(desc.digest), data)
        return desc

    def put_manifest(self, doc: dict) -> Manifest:
        manifest = parse_manifest(_canonical(doc))
        self.store.put_manifest(manifest)
        return manifest

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
        digest = Digest.parse("sha256:" + blob.sha.hexdigest())
        self._commit(name, digest)
        media_type = MediaType.OCI_LAYER_GZIP if spec.compressed else MediaType.OCI_LAYER
        return _Layer(Descriptor(str(media_type), digest, blob.size), "sha256:" + tar.sha.hexdigest())


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
# images


def _write_image_manifest(
    store: _BlobStore,
    platform: Platform,
    layers: list[_Layer],
    labels: dict,
    seed: int,
) -> Manifest:
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
    config_desc = store.put_bytes(_canonical(config), str(MediaType.OCI_CONFIG))
    return store.put_manifest({
        "schemaVersion": 2,
        "mediaType": str(MediaType.OCI_MANIFEST),
        "config": config_desc.to_json(),
        "layers": [layer.descriptor.to_json() for layer in layers],
    })


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
    store = _BlobStore(Path(layout))
    plats = [_platform(p) for p in (platforms or ["linux/amd64"])]
    labels = dict(labels or {})

    children: list[tuple[Platform, Manifest]] = []
    for i, plat in enumerate(plats):
        specs = layers if i == 0 else [
            LayerSpec(s.size, _derive_seed(s.seed, plat.os, plat.architecture, plat.variant or None), s.compressed)
            for s in layers
        ]
        built = [_ensure_layer(store, s) for s in specs]
        children.append((plat, _write_image_manifest(store, plat, built, labels, seed)))

    if len(children) == 1:
        top = children[0][1]
    else:
        top = store.put_manifest({
            "schemaVersion": 2,
            "mediaType": str(MediaType.OCI_INDEX),
            "manifests": [Descriptor(m.media_type, m.digest, len(m.data), platform=plat).to_json()
                          for plat, m in children],
        })
    # The tag: an index.json entry annotated org.opencontainers.image.ref.name, replacing one of the
    # same name (its blobs stay), as the layout place writes it.
    store.store.put_manifest(top, ref)
    return str(top.digest)


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
