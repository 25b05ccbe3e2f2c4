"""Builds with the Docker Engine through the ``docker`` SDK, then ``docker save`` into the store.

The daemon is found the way the docker CLI finds it (``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``,
``DOCKER_CERT_PATH``). The saved archive is converted into an OCI image by our own code
(:mod:`airgap.build.archive`), so no skopeo is needed on the build host.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from airgap import limits
from airgap.build.archive import import_docker_archive
from airgap.build.plan import LOG_TAIL_LINES, BuildTarget, tail
from airgap.errors import BuildError
from airgap.places.layout import LayoutStore
from airgap.progress import Progress

# A RUN step may print nothing for many minutes (a big pip install); only the probe is short.
BUILD_TIMEOUT = limits.BUILD_TIMEOUT
PROBE_TIMEOUT = limits.BUILDER_PROBE_TIMEOUT


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _client(timeout: int) -> Any:
    import docker  # imported late: `airgap load` on the isolated side never needs it

    # version="auto": negotiate the API version, so an older engine (20.10 speaks 1.41) is fine.
    return docker.from_env(version="auto", timeout=timeout)


def daemon_answers() -> bool:
    """True when a Docker Engine answers at DOCKER_HOST (for ``--builder auto``)."""
    try:
        client = _client(PROBE_TIMEOUT)
    except Exception:  # docker.errors.DockerException, or a connection error under it
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


class DockerBuilder:
    name = "docker"

    def __init__(self) -> None:
        try:
            self.client = _client(BUILD_TIMEOUT)
            self.client.ping()
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise BuildError(f"cannot reach the Docker Engine at {docker_host()} ({reason[:200]}); start dockerd or "
                             "set DOCKER_HOST, or build without a daemon: --builder buildah") from None
        # A daemon without the default bridge network (dockerd --bridge=none) cannot give RUN steps a
        # network; ask for none, or the build fails before its first step.
        self.network_mode = None if self.client.api.networks(names=["bridge"]) else "none"

    def describe(self) -> str:
        version = self.client.version().get("Version", "?")
        net = f", network {self.network_mode}" if self.network_mode else ""
        return f"docker (Docker Engine {version} at {docker_host()}{net})"

    def build(self, target: BuildTarget, store: LayoutStore, log: Path, progress: Progress) -> str:
        if len(target.platforms) > 1:
            raise BuildError(f"{target.where}: the Docker Engine builder makes one platform per image, this one wants "
                             f"{', '.join(str(p) for p in target.platforms)}: use --builder buildah")
        image_id = self._build(target, log, progress)
        fd, tmp = tempfile.mkstemp(prefix=".docker-save-", suffix=".tar", dir=store.root.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in self.client.api.get_image(image_id):
                    fh.write(chunk)
            return str(import_docker_archive(Path(tmp), store, target.ref, target.epoch))
        finally:
            os.unlink(tmp)

    def _build(self, target: BuildTarget, log: Path, progress: Progress) -> str:
        args = dict(target.args)
        if target.epoch is not None:
            # The classic builder cannot pin timestamps itself; a Dockerfile may use the arg (ARG
            # SOURCE_DATE_EPOCH), and the export pins the config's times (archive.py).
            args.setdefault("SOURCE_DATE_EPOCH", str(target.epoch))
        kwargs: dict[str, Any] = dict(path=str(target.context), dockerfile=str(target.dockerfile), tag=target.ref,
                                      buildargs=args, labels=target.labels, target=target.target, rm=True,
                                      forcerm=True, decode=True, network_mode=self.network_mode)
        if target.platforms:
            kwargs["platform"] = str(target.platforms[0])
        last: deque[str] = deque(maxlen=LOG_TAIL_LINES * 4)
        image_id = None
        t0 = time.monotonic()
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"docker build {target.ref} ({target.dockerfile}, context {target.context})\n")
            try:
                for chunk in self.client.api.build(**kwargs):
                    text = chunk.get("stream") or chunk.get("status") or ""
                    if chunk.get("error"):
                        text = chunk["error"] + "\n"
                    if text:
                        fh.write(text)
                        last.extend(text.splitlines())
                        if text.startswith("Step ") and " : LABEL " not in text:  # our --label steps: noise
                            progress.note(f"  {target.name}: {text.rstrip()}")
                    if chunk.get("error"):
                        raise BuildError(f"{target.where}: build failed after {time.monotonic() - t0:.0f} s "
                                         f"(full log {log}); last lines:\n{tail(last)}")
                    aux = chunk.get("aux") or {}
                    if aux.get("ID"):
                        image_id = aux["ID"]
            except BuildError:
                raise
            except Exception as exc:  # API errors (a bad Dockerfile path, a lost connection)
                raise BuildError(f"{target.where}: the Docker Engine refused the build: {exc}; last lines:\n"
                                 f"{tail(last)}") from None
        if image_id is None:
            raise BuildError(f"{target.where}: the Docker Engine reported no image id (full log {log})")
        return image_id
