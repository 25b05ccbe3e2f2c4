"""Start and stop a real CNCF Distribution registry (``/usr/bin/docker-registry``) on loopback.

Shared by ``tests/conftest.py`` (pytest fixtures) and ``bench/bench.py``; it imports nothing from
pytest so the benchmark can use it as a plain module.

Notes on Distribution 2.8 as packaged by Debian:

* htpasswd auth works over plain HTTP too (the docs ask for TLS because basic credentials travel in
  clear, but the server does not enforce it), so ``auth=True`` does not imply ``tls=True`` here.
* Blobs are committed under ``<root>/docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data``; a push that
  was started but never finished leaves only ``_uploads`` entries under the repository, so reading the
  ``blobs`` tree tells what a client really committed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from contextlib import contextmanager

import httpx

REGISTRY_BIN = Path(os.environ.get("AIRGAP_TEST_REGISTRY_BIN", "/usr/bin/docker-registry"))
SKOPEO_BIN = os.environ.get("AIRGAP_TEST_SKOPEO_BIN", "skopeo")
HTPASSWD_BIN = "htpasswd"

MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)

INSTALL_HINT = "run `make test` (it installs docker-registry, skopeo and apache2-utils with apt-get)"


class RegistryError(RuntimeError):
    pass


@dataclass
class Registry:
    """Where a running registry listens and how to talk to it."""

    host: str  # "127.0.0.1:PORT"
    scheme: str  # "http" or "https"
    ca_file: Path | None
    username: str | None
    password: str | None
    data_dir: Path  # storage root given to the filesystem driver

    def url(self, path: str = "/v2/") -> str:
        return f"{self.scheme}://{self.host}/{path.lstrip('/')}"

    def ssl_context(self) -> ssl.SSLContext | bool:
        if self.scheme != "https":
            return True
        if self.ca_file is None:
            return ssl.create_default_context()
        return ssl.create_default_context(cafile=str(self.ca_file))

    def client(self, **kwargs) -> httpx.Client:
        """An httpx client trusting the registry's CA and sending its credentials."""
        auth = (self.username, self.password) if self.username is not None else None
        kwargs.setdefault("timeout", 30.0)
        return httpx.Client(verify=self.ssl_context(), auth=auth, **kwargs)

    def catalog(self) -> list[str]:
        repos: list[str] = []
        with self.client() as c:
            url: str | None = self.url("/v2/_catalog?n=1000")
            while url:
                r = c.get(url)
                r.raise_for_status()
                repos.extend(r.json().get("repositories") or [])
                url = _next_link(r, self)
        return repos

    def tags(self, repo: str) -> list[str]:
        with self.client() as c:
            r = c.get(self.url(f"/v2/{repo}/tags/list"))
            if r.status_code == 404:
                return []
            r.raise_for_status()
            return list(r.json().get("tags") or [])

    def manifest_digest(self, repo: str, ref: str) -> str | None:
        """Docker-Content-Digest of ``repo:ref`` (tag or digest), or None when it does not exist."""
        with self.client() as c:
            r = c.head(self.url(f"/v2/{repo}/manifests/{ref}"), headers={"Accept": MANIFEST_ACCEPT})
            if r.status_code == 404:
                return None
            r.raise_for_status()
            return r.headers.get("Docker-Content-Digest")

    def committed_blobs(self) -> set[str]:
        """Digests of every blob committed to storage, read from the filesystem, not the API."""
        root = self.data_dir / "docker" / "registry" / "v2" / "blobs" / "sha256"
        if not root.is_dir():
            return set()
        return {"sha256:" + d.parent.name for d in root.glob("??/*/data") if d.is_file()}

    def skopeo_dest_args(self) -> list[str]:
        """skopeo copy flags to push into this registry (TLS trust or plain http, credentials)."""
        return self.skopeo_args("dest")

    def skopeo_src_args(self) -> list[str]:
        """skopeo copy flags to pull from this registry."""
        return self.skopeo_args("src")

    def skopeo_args(self, side: str = "") -> list[str]:
        """Flags for ``side`` "src"/"dest" (skopeo copy) or "" (skopeo inspect, list-tags, delete)."""
        prefix = f"--{side}-" if side else "--"
        args: list[str] = []
        if self.scheme == "http":
            args.append(f"{prefix}tls-verify=false")
        elif self.ca_file is not None:
            # skopeo wants a directory holding *.crt files, not a bundle path.
            args.append(f"{prefix}cert-dir={self.cert_dir}")
        if self.username is not None:
            args.append(f"{prefix}creds={self.username}:{self.password}")
        return args

    @property
    def cert_dir(self) -> Path | None:
        """Directory with the CA as ca.crt (the layout skopeo/containers expect), if TLS."""
        return None if self.ca_file is None else self.ca_file.parent / "certs.d"


def _next_link(response: httpx.Response, reg: Registry) -> str | None:
    link = response.headers.get("Link")
    if not link or 'rel="next"' not in link:
        return None
    target = link.split(";", 1)[0].strip().strip("<>")
    return reg.url(target) if target.startswith("/") else target


@dataclass
class RegistryProcess:
    registry: Registry
    process: subprocess.Popen
    workdir: Path
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate, then kill if it lingers; always reap the child. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        proc = self.process
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the parent dies without stopping us (SIGKILL, OOM)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:  # best effort; stop() is the real mechanism
        pass


def free_port() -> int:
    # Racy by nature (the port is released before the registry binds it); start() retries.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_tools(*names: str) -> None:
    """Raise RegistryError naming the missing tools and how to get them."""
    missing = []
    for name in names:
        if name == "docker-registry":
            if not (REGISTRY_BIN.is_file() and os.access(REGISTRY_BIN, os.X_OK)):
                missing.append(str(REGISTRY_BIN))
        elif shutil.which(name) is None:
            missing.append(name)
    if missing:
        raise RegistryError(f"missing {', '.join(missing)}: {INSTALL_HINT}")


def _make_tls(workdir: Path) -> tuple[Path, Path, Path]:
    import trustme  # test extra; only needed for TLS registries

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    tls_dir = workdir / "tls"
    tls_dir.mkdir()
    ca_file = tls_dir / "ca.pem"
    cert_file = tls_dir / "server.pem"
    key_file = tls_dir / "server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_pem.write_to_path(str(key_file))
    # Full chain (leaf first) so clients that only know the CA can build the path.
    with open(cert_file, "wb") as f:
        for blob in cert.cert_chain_pems:
            f.write(blob.bytes())
    certs_d = tls_dir / "certs.d"
    certs_d.mkdir()
    shutil.copy(ca_file, certs_d / "ca.crt")
    return ca_file, cert_file, key_file


def _make_htpasswd(workdir: Path, users: dict[str, str]) -> Path:
    require_tools(HTPASSWD_BIN)
    lines = [
        subprocess.run([HTPASSWD_BIN, "-Bbn", name, password], check=True, capture_output=True,
                       text=True).stdout.strip()
        for name, password in users.items()
    ]
    path = workdir / "htpasswd"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_registry(
    workdir: Path,
    *,
    tls: bool = False,
    auth: bool = False,
    ready_timeout: float = 30.0,
    attempts: int = 3,
    credentials: tuple[str, str] | None = None,
    auth_config: dict | None = None,
    users: dict[str, str] | None = None,
    log_level: str = "error",
) -> RegistryProcess:
    """Start a registry storing under ``workdir/data``; return once GET /v2/ answers.

    ``workdir`` must not exist yet or be empty. The caller owns the result and must call
    ``stop()`` (use :func:`running_registry` for a context manager). ``credentials`` fixes the htpasswd
    user and password (ECR's ``AWS``/token); ``users`` (name -> password) puts several users into the
    htpasswd file, the first of them the one ``Registry.username`` holds (htpasswd gives every user
    every repository); ``auth_config`` replaces the ``auth`` section (token auth). ``log_level="info"``
    logs a "response completed" line per request to ``RegistryProcess.log_path``, with
    ``auth.user.name`` and ``http.request.uri`` (which user each request came as).
    """
    require_tools("docker-registry")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)

    ca_file = cert_file = key_file = None
    if tls:
        ca_file, cert_file, key_file = _make_tls(workdir)
    username = password = None
    htpasswd = None
    if credentials or users:
        auth = True
    if auth and not auth_config:
        accounts = dict(users or [credentials or ("user", secrets.token_urlsafe(16))])
        username, password = next(iter(accounts.items()))
        htpasswd = _make_htpasswd(workdir, accounts)
    if auth_config:
        auth = True

    last_error = ""
    for attempt in range(attempts):
        port = free_port()
        http: dict = {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)}
        if tls:
            http["tls"] = {"certificate": str(cert_file), "key": str(key_file)}
        config: dict = {
            "version": 0.1,
            "log": {"level": log_level, "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(data_dir)},
                "delete": {"enabled": True},
                # Background purge of stale uploads would race with tests inspecting _uploads.
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": http,
        }
        if auth_config:
            config["auth"] = auth_config
        elif auth:
            config["auth"] = {"htpasswd": {"realm": "test", "path": str(htpasswd)}}
        # JSON is valid YAML; no need for a YAML writer here.
        config_path = workdir / "config.yml"
        config_path.write_text(json.dumps(config, indent=2))
        log_path = workdir / f"registry-{attempt}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [str(REGISTRY_BIN), "serve", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own process group: a Ctrl-C in the terminal goes to pytest, which then stops us cleanly.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        reg = Registry(
            host=f"127.0.0.1:{port}",
            scheme="https" if tls else "http",
            ca_file=ca_file,
            username=username,
            password=password,
            data_dir=data_dir,
        )
        rp = RegistryProcess(reg, proc, workdir, log_path)
        try:
            if _wait_ready(rp, ready_timeout, expect_auth=auth):
                return rp
        except BaseException:
            rp.stop()
            raise
        rp.stop()
        last_error = rp.log_tail()
    raise RegistryError(f"registry did not start after {attempts} attempts; last log:\n{last_error}")


def _wait_ready(rp: RegistryProcess, timeout: float, *, expect_auth: bool) -> bool:
    """Poll GET /v2/ until 200 (401 when auth is on). False when the process died (port race)."""
    reg = rp.registry
    ok = {401} if expect_auth else {200}
    deadline = time.monotonic() + timeout
    # No credentials here on purpose: a 401 proves the auth layer is active.
    with httpx.Client(verify=reg.ssl_context(), timeout=2.0) as c:
        while time.monotonic() < deadline:
            if rp.process.poll() is not None:
                return False
            try:
                r = c.get(reg.url("/v2/"))
                if r.status_code in ok:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    rp.stop()
    raise RegistryError(f"registry on {reg.host} not ready within {timeout}s; log:\n{rp.log_tail()}")


@contextmanager
def running_registry(workdir: Path, *, tls: bool = False, auth: bool = False) -> Iterator[Registry]:
    rp = start_registry(workdir, tls=tls, auth=auth)
    try:
        yield rp.registry
    finally:
        rp.stop()


def run_skopeo(*args: str, timeout: float | None = 600) -> subprocess.CompletedProcess:
    """Run skopeo with check=True and captured text output; failures show skopeo's stderr."""
    require_tools(SKOPEO_BIN)
    cmd = [SKOPEO_BIN]
    # A fresh machine may lack /etc/containers/policy.json (containers-common); skopeo copy needs one.
    if "--policy" not in args and "--insecure-policy" not in args and not Path("/etc/containers/policy.json").exists():
        cmd.append("--insecure-policy")
    cmd.extend(args)
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout)
    except subprocess.CalledProcessError as exc:
        raise RegistryError(
            f"skopeo failed ({exc.returncode}): {' '.join(cmd)}\nstdout:\n{exc.stdout}\nstderr:\n{exc.stderr}"
        ) from None
