"""Real image builders for the tests and the demo: a private dockerd, private buildah storage, and a
busybox base image made locally (no registry can be reached to pull one).

Like ``registry_server.py`` this imports nothing from pytest, so ``scripts/demo.py`` uses it too.
Recipes follow ``../shared/ENVIRONMENT.md``: dockerd with vfs, no iptables and no bridge, its own
socket, data-root and exec-root under a scratch directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from registry_server import _die_with_parent

BUSYBOX = Path("/bin/busybox")  # Debian busybox-static: one static binary, no libraries needed


class BuilderSetupError(RuntimeError):
    pass


# ----------------------------------------------------------------------------------------- buildah

def buildah_env(root: Path) -> dict[str, str]:
    """Environment for buildah with its own image storage under ``root`` (vfs: works anywhere)."""
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "vfs"\nrunroot = "{root}/run"\ngraphroot = "{root}/graph"\n')
    return {"CONTAINERS_STORAGE_CONF": str(conf), "BUILDAH_ISOLATION": "chroot"}


def _run(cmd: list[str], env: dict[str, str], **kw) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, **kw)
    if proc.returncode != 0:
        raise BuilderSetupError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout.strip()


def make_busybox_base(env: dict[str, str], image: str, workdir: Path) -> None:
    """Commit ``image`` (e.g. ``airgap-base:1``) to buildah storage: /bin/busybox plus a symlink per
    applet, PATH set. Takes about a second."""
    if shutil.which("buildah") is None:
        raise BuilderSetupError("buildah is not installed: run `make test` (scripts/install-deps.sh installs it)")
    if not BUSYBOX.is_file():
        raise BuilderSetupError(f"{BUSYBOX} missing: apt-get install busybox-static")
    rootfs = workdir / "busybox-rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "tmp").mkdir()
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (rootfs / "bin" / applet).symlink_to("busybox")
    container = _run(["buildah", "from", "scratch"], env)
    try:
        _run(["buildah", "copy", "--quiet", container, str(rootfs), "/"], env)
        _run(["buildah", "config", "--env", "PATH=/bin", "--cmd", "/bin/sh", container], env)
        _run(["buildah", "commit", "--quiet", "--rm", container, image], env)
    except BaseException:
        subprocess.run(["buildah", "rm", container], capture_output=True, env={**os.environ, **env})
        raise


def export_docker_archive(env: dict[str, str], image: str, path: Path) -> Path:
    """``docker load``-able archive of a buildah image, named ``image``."""
    _run(["buildah", "push", "--quiet", image, f"docker-archive:{path}:{image}"], env)
    return path


# ----------------------------------------------------------------------------------------- dockerd

@dataclass
class Dockerd:
    host: str                      # unix:///.../docker.sock, for DOCKER_HOST
    process: subprocess.Popen
    workdir: Path
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the whole process group (dockerd, its containerd, shims), SIGKILL what lingers."""
        if self._stopped:
            return
        self._stopped = True
        pgid = self.process.pid  # start_new_session: the group id is dockerd's pid
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            # dockerd is gone; make sure its children are too before the directory is removed.
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        _unmount_below(self.workdir)


def _unmount_below(path: Path) -> None:
    """dockerd can leave mounts (shm, netns) under its roots when it dies hard; unmount them."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    targets = [m.split()[1] for m in mounts if len(m.split()) > 1 and m.split()[1].startswith(str(path))]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)


def start_dockerd(workdir: Path, ready_timeout: float = 60.0) -> Dockerd:
    """A private Docker Engine on a unix socket under ``workdir``; the caller must ``stop()`` it."""
    binary = shutil.which("dockerd") or ("/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None)
    if binary is None:
        raise BuilderSetupError("dockerd is not installed (apt-get install docker.io; `make test` does)")
    workdir.mkdir(parents=True, exist_ok=True)
    sock = workdir / "docker.sock"
    log_path = workdir / "dockerd.log"
    cmd = [binary, "--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs",
           "--host", f"unix://{sock}", "--data-root", str(workdir / "data"), "--exec-root", str(workdir / "exec"),
           "--pidfile", str(workdir / "docker.pid")]
    with open(log_path, "wb") as log:
        # Own process group so stop() can end dockerd with its containerd; SIGTERM if we die first.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_parent)
    daemon = Dockerd(f"unix://{sock}", proc, workdir, log_path)
    try:
        _wait_ready(daemon, ready_timeout)
    except BaseException:
        daemon.stop()
        raise
    return daemon


def _wait_ready(daemon: Dockerd, timeout: float) -> None:
    import docker

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.process.poll() is not None:
            raise BuilderSetupError(f"dockerd exited ({daemon.process.returncode}): {daemon.log_tail()}")
        if Path(daemon.host[len("unix://"):]).exists():
            try:
                client = docker.DockerClient(base_url=daemon.host, version="auto", timeout=5)
                client.ping()
                client.close()
                return
            except Exception:
                pass
        time.sleep(0.2)
    raise BuilderSetupError(f"dockerd not ready within {timeout:.0f} s: {daemon.log_tail()}")


def docker_load(host: str, archive: Path) -> None:
    import docker

    client = docker.DockerClient(base_url=host, version="auto", timeout=120)
    try:
        with open(archive, "rb") as fh:
            client.images.load(fh)
    finally:
        client.close()
