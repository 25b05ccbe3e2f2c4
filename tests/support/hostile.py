"""Crafting hostile bundles from a real signed one, and running the CLI with its cost measured.

A case edits the members of a genuine bundle (made by ``airgap bundle --key`` from synthetic images,
a real chart directory and a CRD file) with tarfile, then re-signs the edited manifest with the test
key when the case must get past the signature check, as an attacker holding the key (or anyone,
under --insecure-skip-verify) could.
"""

from __future__ import annotations

import copy
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from airgap.sign.blob import sign_blob
from airgap.sign.keys import load_private_key
from helpers import airgap, write_images_md
from synth import LayerSpec, add_image

PASSWORD = "hostile-test-key"
MANIFEST = "airgap-bundle.json"
SIGNATURE = "airgap-bundle.json.sig"


@dataclass
class Base:
    dir: Path
    bundle: Path          # signed, with chart and CRD
    key: Path
    pub: Path
    chart_dir: Path
    images_md: Path
    split: list[Path]     # the same images as a split bundle (signed)

    def private_key(self):
        if not hasattr(self, "_private"):  # scrypt makes each load slow: once per session
            self._private = load_private_key(self.key, PASSWORD.encode())
        return self._private


def make_chart(path: Path, name: str = "demo", version: str = "0.1.0", extra: str = "") -> Path:
    (path / "templates").mkdir(parents=True)
    (path / "Chart.yaml").write_text(f"apiVersion: v2\nname: {name}\nversion: {version}\n{extra}")
    (path / "values.yaml").write_text("app:\n  image:\n    repository: app\n")
    (path / "templates" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n")
    return path


def make_base(d: Path) -> Base:
    airgap("keygen", "--output-key-prefix", str(d / "k"), env={"COSIGN_PASSWORD": PASSWORD})
    layout = d / "src"
    add_image(layout, "app", layers=[LayerSpec(size=64 << 10, seed=7)])
    add_image(layout, "multi", layers=[LayerSpec(size=48 << 10, seed=8)], platforms=["linux/amd64", "linux/arm64"])
    add_image(layout, "big", layers=[LayerSpec(size=2 << 20, seed=9), LayerSpec(size=2 << 20, seed=10)])
    chart = make_chart(d / "chart")
    crd = d / "crd.yaml"
    crd.write_text("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: x\n")
    md = write_images_md(d / "IMAGES.md", "1.0.0", [
        {"name": "app", "source": f"oci:{layout}:app", "values": "app.image"},
        {"name": "multi", "source": f"oci:{layout}:multi", "values": "multi.image"},
    ])
    env = {"COSIGN_PASSWORD": PASSWORD, "SOURCE_DATE_EPOCH": "1700000000"}
    bundle = d / "base.tar"
    airgap("bundle", "--images", str(md), "-o", str(bundle), "--chart", str(chart), "--crds", str(crd),
           "--store", str(d / "store"), "--key", str(d / "k.key"), env=env)
    split_md = write_images_md(d / "IMAGES-split.md", "1.0.0", [
        {"name": "app", "source": f"oci:{layout}:app"}, {"name": "big", "source": f"oci:{layout}:big"}])
    split_dir = d / "split"
    split_dir.mkdir()
    result = json.loads(airgap("bundle", "--images", str(split_md), "-o", str(split_dir / "s.tar"), "--no-chart",
                               "--store", str(d / "store"), "--key", str(d / "k.key"), "--split", "3M", "--json",
                               env=env).stdout)
    return Base(d, bundle, d / "k.key", d / "k.pub", chart, md, [Path(p) for p in result["files_written"]])


class Edit:
    """The members of a bundle, editable; ``write`` makes a tar of them (re-signed unless told not to)."""

    def __init__(self, base: Base, source: Path | None = None):
        self.base = base
        self.members: list[tuple[tarfile.TarInfo, bytes]] = []
        with tarfile.open(source or base.bundle) as tf:
            for info in tf:
                data = tf.extractfile(info).read() if info.isfile() else b""
                self.members.append((copy.copy(info), data))
        self.doc = json.loads(self.data(MANIFEST))
        self.raw_manifest: bytes | None = None   # exact manifest bytes, instead of doc
        self.sign = True

    def index(self, name: str) -> int:
        return next(n for n, (i, _) in enumerate(self.members) if i.name == name)

    def data(self, name: str) -> bytes:
        return self.members[self.index(name)][1]

    def set(self, name: str, data: bytes) -> None:
        info, _ = self.members[self.index(name)]
        info.size = len(data)
        self.members[self.index(name)] = (info, data)

    def add(self, name: str, data: bytes = b"", at: int | None = None, **attrs) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        for k, v in attrs.items():
            setattr(info, k, v)
        self.members.insert(len(self.members) if at is None else at, (info, data))
        return info

    def remove(self, name: str) -> None:
        del self.members[self.index(name)]

    def image(self, n: int = 0) -> dict:
        return self.doc["images"][n]

    def file(self, kind: str) -> dict:
        return next(f for f in self.doc["files"] if f["kind"] == kind)

    def chart_members(self) -> list[tuple[tarfile.TarInfo, bytes]]:
        with tarfile.open(fileobj=io.BytesIO(self.data(self.file("chart")["path"])), mode="r:gz") as tf:
            return [(copy.copy(i), tf.extractfile(i).read() if i.isfile() else b"") for i in tf]

    def set_chart(self, members: list[tuple[tarfile.TarInfo, bytes]] | None = None, raw: bytes | None = None) -> None:
        """Replace the chart archive, and pin the new one in the manifest (so only its content is hostile)."""
        if raw is None:
            buf = io.BytesIO()
            with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tf:
                for info, data in members or []:
                    info.size = len(data) if info.isfile() else 0
                    tf.addfile(info, io.BytesIO(data) if info.isfile() else None)
            raw = buf.getvalue()
        import hashlib
        f = self.file("chart")
        self.set(f["path"], raw)
        f["sha256"], f["size"] = hashlib.sha256(raw).hexdigest(), len(raw)

    def manifest_bytes(self) -> bytes:
        return self.raw_manifest if self.raw_manifest is not None else json.dumps(self.doc, indent=2).encode()

    def write(self, path: Path) -> Path:
        body = self.manifest_bytes()
        self.set(MANIFEST, body)
        if self.sign and any(i.name == SIGNATURE for i, _ in self.members):
            self.set(SIGNATURE, sign_blob(self.base.private_key(), body) + b"\n")
        with open(path, "wb") as fh:
            for info, data in self.members:
                fh.write(info.tobuf(format=tarfile.PAX_FORMAT))
                if info.isfile() or info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
                    fh.write(data)
                    fh.write(b"\0" * ((-len(data)) % 512))
            fh.write(b"\0" * 1024)
        return path


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    max_rss: int      # bytes, of the airgap process
    seconds: float


def run_measured(args: list[str], cwd: Path, timeout: float = 60.0) -> Run:
    """The CLI as a child process, its peak RSS taken from wait4's rusage; killed past ``timeout``."""
    env = dict(os.environ)
    env.pop("AIRGAP_REGISTRY_USERNAME", None)
    env.pop("AIRGAP_REGISTRY_PASSWORD", None)
    out, err = cwd.parent / f".{cwd.name}.out", cwd.parent / f".{cwd.name}.err"
    t0 = time.monotonic()
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", "airgap", "-q", *args], cwd=cwd, stdout=o, stderr=e,
                                stdin=subprocess.DEVNULL, env=env)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - t0
    run = Run(proc.returncode, out.read_text(errors="replace"), err.read_text(errors="replace"),
              usage.ru_maxrss * 1024, seconds)
    out.unlink()
    err.unlink()
    return run


def tree(path: Path) -> set[str]:
    """Every path below ``path`` (relative), to compare before and after a run."""
    return {str(p.relative_to(path)) for p in path.rglob("*")} if path.exists() else set()
