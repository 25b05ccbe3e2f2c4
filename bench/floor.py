"""What the registry and the disk allow: the pushes of `airgap load`, by a client that costs ~nothing.

Not a test, not shipped: bench.py runs it beside airgap and skopeo, into a fresh registry of the
same kind, so each ratio can be read against the best any client could do there. Run alone:

    .venv/bin/python bench/floor.py BUNDLE.tar HOST:PORT/PREFIX [--streams N]

It trusts the bundle (no signature check, no hashing) and pushes what a load of it pushes, nothing
more: each image's blobs and its signatures' blobs (a blob a repository pushed earlier is mounted
into the next, one request), every blob as POST then one ``PUT ?digest=`` whose body the kernel sends
from the bundle file (``sendfile``), then the manifests an index names, each signature manifest by
its cosign tag and each image manifest by its tag. No probes, no release record, no catalog, no
retries; plain HTTP only. Requests go over kept-alive ``http.client`` connections, ``--streams`` at
once, largest blobs first. What is left is the registry's work (its request handling, hashing,
writes and fsyncs) and the machine's: airgap's wall time over this one is what airgap itself costs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path

INDEX_TYPES = {"application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json"}


@dataclass
class Member:
    offset: int
    size: int


@dataclass
class Image:
    repo: str
    tag: str
    digest: str
    media_type: str
    blobs: list[str] = field(default_factory=list)
    #: (digest, media type, tag or None): children and signatures, pushed before the image's tag.
    manifests: list[tuple[str, str, str | None]] = field(default_factory=list)


class Floor:
    def __init__(self, bundle: Path, target: str):
        host, _, prefix = target.partition("/")
        self.bundle = bundle
        self.host, self.prefix = host, prefix.strip("/")
        with tarfile.open(bundle) as tar:
            self.members = {m.name: Member(m.offset_data, m.size) for m in tar.getmembers() if m.isfile()}
        self.fd = os.open(bundle, os.O_RDONLY)
        self._local = threading.local()
        self.requests = 0
        self._lock = threading.Lock()

    # -- reading the bundle (trusted: this is a benchmark, not a load) -----------------------------
    def read(self, name: str) -> bytes:
        m = self.members[name]
        return os.pread(self.fd, m.size, m.offset)

    def blob_member(self, digest: str) -> str:
        algo, hexd = digest.split(":", 1)
        return f"oci/blobs/{algo}/{hexd}"

    def doc(self, digest: str) -> dict:
        return json.loads(self.read(self.blob_member(digest)))

    def images(self) -> list[Image]:
        manifest = json.loads(self.read("airgap-bundle.json"))
        out = []
        for entry in manifest["images"]:
            img = Image(f"{self.prefix}/{entry['name']}", entry["tag"], entry["digest"], entry["mediaType"])
            self._walk(img, entry["digest"], entry["mediaType"], top=True)
            for sig in entry.get("signatures") or []:
                signed = sig["signed"]
                self._walk(img, sig["digest"], "application/vnd.oci.image.manifest.v1+json",
                           tag=f"{signed.replace(':', '-')}.sig")
            out.append(img)
        return out

    def _walk(self, img: Image, digest: str, media_type: str, *, top: bool = False, tag: str | None = None) -> None:
        doc = self.doc(digest)
        media_type = doc.get("mediaType", media_type)
        if media_type in INDEX_TYPES:
            for child in doc.get("manifests", []):
                if self.blob_member(child["digest"]) in self.members:
                    self._walk(img, child["digest"], child.get("mediaType", ""))
        else:
            img.blobs += [d["digest"] for d in [doc["config"], *doc.get("layers", [])]]
        if not top:
            img.manifests.append((digest, media_type, tag))
        else:
            img.media_type = media_type

    # -- HTTP ---------------------------------------------------------------------------------------
    def _conn(self) -> HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            host, _, port = self.host.partition(":")
            conn = self._local.conn = HTTPConnection(host, int(port or 80), timeout=600)
        return conn

    def call(self, method: str, path: str, headers: dict[str, str] | None = None, *, body: bytes = b"",
             file_range: Member | None = None, ok: tuple[int, ...] = (201, 202)) -> dict[str, str]:
        conn = self._conn()
        size = file_range.size if file_range else len(body)
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in {**(headers or {}), "Content-Length": str(size)}.items():
            conn.putheader(k, v)
        conn.endheaders(body if body else None)
        if file_range is not None:
            assert conn.sock is not None
            conn.sock.sendfile(_RawFile(self.fd), file_range.offset, file_range.size)
        resp = conn.getresponse()
        data = resp.read()
        with self._lock:
            self.requests += 1
        if resp.status not in ok:
            raise SystemExit(f"floor: {method} {path}: {resp.status} {data[:300]!r}")
        return {k.lower(): v for k, v in resp.getheaders()}

    def upload(self, repo: str, digest: str) -> None:
        loc = self.call("POST", f"/v2/{repo}/blobs/uploads/", ok=(202,))["location"]
        loc = loc.split(self.host, 1)[1] if "://" in loc else loc
        self.call("PUT", f"{loc}{'&' if '?' in loc else '?'}digest={digest}",
                  {"Content-Type": "application/octet-stream"}, file_range=self.members[self.blob_member(digest)],
                  ok=(201,))

    def mount(self, repo: str, digest: str, source: str) -> None:
        self.call("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={source}", ok=(201,))

    def put_manifest(self, repo: str, ref: str, digest: str, media_type: str) -> None:
        self.call("PUT", f"/v2/{repo}/manifests/{ref}", {"Content-Type": media_type},
                  body=self.read(self.blob_member(digest)), ok=(201,))

    # -- the push -----------------------------------------------------------------------------------
    def run(self, streams: int) -> None:
        images = self.images()
        first: dict[str, str] = {}  # blob -> the repository that uploads it
        mounts: list[tuple[str, str, str]] = []
        for img in images:
            for d in dict.fromkeys(img.blobs):
                if d in first:
                    if first[d] != img.repo:
                        mounts.append((img.repo, d, first[d]))
                else:
                    first[d] = img.repo
        uploads = sorted(first.items(), key=lambda kv: -self.members[self.blob_member(kv[0])].size)
        with ThreadPoolExecutor(streams) as pool:
            # Phases as airgap orders them: every blob before a manifest needs it, tags last.
            list(pool.map(lambda kv: self.upload(kv[1], kv[0]), uploads))
            list(pool.map(lambda m: self.mount(*m), mounts))
            list(pool.map(lambda img: [self.put_manifest(img.repo, tag or d, d, mt)
                                       for d, mt, tag in img.manifests], images))
            list(pool.map(lambda img: self.put_manifest(img.repo, img.tag, img.digest, img.media_type), images))


class _RawFile:
    """socket.sendfile wants a file object; this one is the bundle's fd, shared by every thread
    (sendfile reads at an explicit offset, so no seek position is shared)."""

    def __init__(self, fd: int):
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def seek(self, *_args) -> int:  # socket.sendfile restores the position afterwards
        return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("target", help="HOST:PORT/PREFIX of a plain-HTTP registry without authentication")
    ap.add_argument("--streams", type=int, default=4)
    args = ap.parse_args(argv)
    floor = Floor(args.bundle, args.target)
    t0 = time.perf_counter()
    floor.run(args.streams)
    print(json.dumps({"wall_s": round(time.perf_counter() - t0, 3), "requests": floor.requests,
                      "streams": args.streams}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
