"""Daemonless builds with buildah: ``buildah bud``, then ``buildah push`` into a scratch OCI layout,
then the copy engine moves the image into the store (digest-checked, tag written last).

Going through a scratch layout rather than pushing into the store directly keeps every write to
the store's ``index.json`` under our lock, with our tag semantics (one entry per tag).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path

from airgap.build.plan import LOG_TAIL_LINES, BuildTarget, tail
from airgap.copy import CopyEngine, CopyJob
from airgap.errors import BuildError
from airgap.places.layout import LayoutStore
from airgap.progress import Progress

_SCRATCH_REF = "image"
_LABEL_STEP = re.compile(r":\s*LABEL ")  # the label steps buildah appends for --label: noise in the progress
_STEP = re.compile(r"^(\[\d+/\d+\] )?STEP \d")  # "[1/2] STEP 3/5: RUN ..." in multi-stage builds


class BuildahBuilder:
    name = "buildah"

    def __init__(self, binary: str = "buildah"):
        found = shutil.which(binary)
        if found is None:
            raise BuildError("buildah is not installed: apt-get install buildah (or use --builder docker "
                             "with a running Docker Engine)")
        self.binary = found
        # chroot isolation runs RUN steps as root without user namespaces or a network setup, which
        # is what works inside containers and on locked-down build hosts; BUILDAH_ISOLATION wins.
        self.env = {**os.environ, "BUILDAH_ISOLATION": os.environ.get("BUILDAH_ISOLATION") or "chroot"}

    @staticmethod
    def available() -> bool:
        return shutil.which("buildah") is not None

    def describe(self) -> str:
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True, env=self.env)
        version = out.stdout.strip() or "buildah"
        return f"buildah ({version.split('(')[0].strip()}, isolation {self.env['BUILDAH_ISOLATION']}, daemonless)"

    def build(self, target: BuildTarget, store: LayoutStore, log: Path, progress: Progress) -> str:
        scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=store.root.parent))
        manifest_list = (f"localhost/airgap-build-{target.name}-{uuid.uuid4().hex[:8]}" if len(target.platforms) > 1
                         else None)
        try:
            iidfile = scratch / "iid"
            cmd = [self.binary, "bud", "--file", str(target.dockerfile)]
            if not manifest_list:
                cmd += ["--iidfile", str(iidfile)]  # one image: push it by id (a tag may be shared)
            for key, value in target.args.items():
                cmd += ["--build-arg", f"{key}={value}"]
            for key, value in target.labels.items():
                cmd += ["--label", f"{key}={value}"]
            if target.target:
                cmd += ["--target", target.target]
            if target.epoch is not None:
                # Sets the image's created time and every file's mtime: same sources, same layers.
                cmd += ["--timestamp", str(target.epoch)]
            if target.platforms:
                cmd += ["--platform", ",".join(str(p) for p in target.platforms)]
            if manifest_list:
                cmd += ["--manifest", manifest_list]
            else:
                cmd += ["--tag", f"localhost/{target.ref}"]  # also runnable by hand: buildah/podman run NAME:TAG
            cmd.append(str(target.context))
            self._run(cmd, target, log, progress)

            layout = scratch / "layout"
            if manifest_list:
                push = [self.binary, "manifest", "push", "--all", "--quiet", manifest_list,
                        f"oci:{layout}:{_SCRATCH_REF}"]
            else:
                push = [self.binary, "push", "--quiet", iidfile.read_text().strip(), f"oci:{layout}:{_SCRATCH_REF}"]
            self._run(push, target, log, progress, what="export")
            CopyEngine(concurrency=4, progress=Progress()).copy(
                [CopyJob(target.name, LayoutStore(layout), _SCRATCH_REF, store, [target.ref])])
        finally:
            if manifest_list:
                subprocess.run([self.binary, "manifest", "rm", manifest_list], capture_output=True, env=self.env)
            shutil.rmtree(scratch, ignore_errors=True)
        digest = store.resolve_tag(target.ref)
        assert digest is not None
        return str(digest)

    def _run(self, cmd: list[str], target: BuildTarget, log: Path, progress: Progress, what: str = "build") -> None:
        last: deque[str] = deque(maxlen=LOG_TAIL_LINES * 4)
        t0 = time.monotonic()
        with open(log, "a", encoding="utf-8") as fh:
            fh.write("$ " + " ".join(cmd) + "\n")
            fh.flush()
            try:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        errors="replace", env=self.env, stdin=subprocess.DEVNULL)
            except OSError as exc:
                raise BuildError(f"{target.where}: cannot run buildah: {exc}") from None
            assert proc.stdout is not None
            try:
                for line in proc.stdout:
                    fh.write(line)
                    last.append(line)
                    if _STEP.match(line) and not _LABEL_STEP.search(line):
                        progress.note(f"  {target.name}: {line.rstrip()}")
            finally:
                rc = proc.wait()
        if rc != 0:
            raise BuildError(f"{target.where}: {what} failed (buildah exit {rc} after {time.monotonic() - t0:.0f} s; "
                             f"full log {log}); last lines:\n{tail(last)}")
