"""A Sonatype Nexus 3 look-alike: Debian's nginx in front of a real Distribution registry.

nginx reproduces what Nexus does differently from Distribution (../shared/REGISTRIES.md):
- ``WWW-Authenticate: BASIC realm="Sonatype Nexus Repository Manager"`` (upper case, oras-py#86);
- the hosted repository is the first path component (path-based routing, Nexus >= 3.83) and its
  repository endpoint ``/repository/<hosted>/v2/...`` serves the same content; other repositories 404;
- a cross-repository mount request starts a normal upload (202): the ``mount``/``from`` query is
  dropped before Distribution sees it;
- the referrers API answers 404;
- ``GET /service/rest/v1/status`` answers 200 (the status endpoint detection looks for);
- optionally, HEAD on chosen blobs says 200 although the blob is absent (nexus-public#264).

nginx runs in the foreground as our child with its own prefix, config, pid and logs under a temp
directory, listening on a free 127.0.0.1 port; ``stop()`` always ends it.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from registry_server import RegistryError, _die_with_parent, free_port

NGINX_BIN = shutil.which("nginx") or "/usr/sbin/nginx"
REALM = "Sonatype Nexus Repository Manager"

_CONF = """
{user}
daemon off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 512; }}
http {{
  access_log {work}/access.log;
  client_body_temp_path {work}/body;
  proxy_temp_path {work}/proxy;
  fastcgi_temp_path {work}/fastcgi;
  uwsgi_temp_path {work}/uwsgi;
  scgi_temp_path {work}/scgi;
  client_max_body_size 0;
  server_tokens off;

  upstream distribution {{ server {upstream}; keepalive 16; }}

  map $http_authorization $nexus_auth_ok {{ "Basic {basic}" 1; default 0; }}
  map "$nexus_auth_ok$uri" $nexus_deny {{ ~^0/v2 1; ~^0/repository/ 1; default 0; }}
  # Nexus does not mount: drop ?mount=&from= so the registry starts a plain upload (202).
  map $arg_mount $upstream_query {{ "" $is_args$args; default ""; }}
  # Upload Locations must lead back through the address the client used.
  map $request_uri $location_prefix {{ ~^/repository/{hosted}/ /repository/{hosted}/v2/; default /v2/{hosted}/; }}
  map "$request_method$uri" $ghost_blob {{ {ghost_map} default 0; }}

  server {{
    listen {listen};

    if ($nexus_deny) {{ rewrite ^ /__unauthorized last; }}
    rewrite ^/repository/{hosted}/v2/(.*)$ /v2/{hosted}/$1 last;

    location = /__unauthorized {{
      internal;
      add_header WWW-Authenticate 'BASIC realm="{realm}"' always;
      default_type application/json;
      return 401 '{{"errors":[{{"code":"UNAUTHORIZED","message":"Access denied to the requested resource"}}]}}';
    }}
    location = /service/rest/v1/status {{ return 200; }}
    location /service/rest/v1/repositories/ {{ proxy_pass http://distribution; proxy_set_header Authorization $http_authorization; }}
    location = /v2/ {{ proxy_pass http://distribution/v2/; }}
    location ~ ^/v2/{hosted}/.*/referrers/ {{
      default_type application/json;
      return 404 '{{"errors":[{{"code":"NOT_FOUND","message":"referrers API not supported"}}]}}';
    }}
    location /v2/{hosted}/ {{
      if ($ghost_blob) {{ return 200; }}
      proxy_pass http://distribution$uri$upstream_query;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_redirect ~^(?:https?://[^/]+)?/v2/{hosted}/(?<loc_rest>.*)$ $location_prefix$loc_rest;
    }}
    location / {{
      default_type application/json;
      return 404 '{{"errors":[{{"code":"NAME_UNKNOWN","message":"repository not found"}}]}}';
    }}
  }}
}}
"""


@dataclass
class NexusProxy:
    host: str
    hosted: str
    username: str
    password: str
    workdir: Path
    process: subprocess.Popen

    def access_log(self) -> str:
        try:
            return (self.workdir / "access.log").read_text()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # nginx: fast shutdown
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_nexus(workdir: Path, upstream: str, *, hosted: str = "docker-hosted", username: str = "admin",
                password: str = "admin123", ghost_blobs: tuple[str, ...] = ()) -> NexusProxy:
    if not (os.path.isfile(NGINX_BIN) and os.access(NGINX_BIN, os.X_OK)):
        raise RegistryError("missing nginx: run `make test` (it installs nginx with apt-get)")
    workdir.mkdir(parents=True, exist_ok=True)
    basic = base64.b64encode(f"{username}:{password}".encode()).decode()
    # HEAD lies only; GET and the registry itself still say the truth.
    ghost_map = " ".join(f'"~^HEAD/v2/{hosted}/.*/blobs/{d}$" 1;' for d in ghost_blobs)
    last = ""
    for _ in range(3):
        port = free_port()
        conf = workdir / "nginx.conf"
        conf.write_text(_CONF.format(user="user root;" if os.geteuid() == 0 else "", work=workdir, upstream=upstream,
                                     basic=basic, hosted=hosted, ghost_map=ghost_map, listen=f"127.0.0.1:{port}",
                                     realm=REALM))
        proc = subprocess.Popen([NGINX_BIN, "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(conf)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True, preexec_fn=_die_with_parent)
        nexus = NexusProxy(f"127.0.0.1:{port}", hosted, username, password, workdir, proc)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://{nexus.host}/service/rest/v1/status", timeout=1).status_code == 200:
                    return nexus
            except httpx.TransportError:
                time.sleep(0.05)
        nexus.stop()
        last = (proc.stderr.read().decode(errors="replace") if proc.stderr else "") + \
            (workdir / "error.log").read_text(errors="replace") if (workdir / "error.log").exists() else ""
    raise RegistryError(f"nginx did not start: {last[-2000:]}")


class AllowOnce:
    """Nexus's deployment policy ALLOW_ONCE ("Disable redeploy") for a NexusProxy.

    A Python proxy (http_proxy.Proxy) between nginx and the registry (start nginx with
    ``upstream=allow.host``): a manifest PUT to a tag that already exists is refused with 400
    "Repository does not allow updating assets", even when the digest is the same (Nexus compares
    paths, not content); and the admin REST endpoint ``GET /service/rest/v1/repositories/docker/hosted/<name>``
    reports ``storage.writePolicy: ALLOW_ONCE`` (Nexus REST API, "Repository Management")."""

    def __init__(self, backend, hosted: str = "docker-hosted", username: str = "admin",
                 password: str = "admin123") -> None:
        from http_proxy import Proxy
        self.backend, self.hosted, self.username, self.password = backend, hosted, username, password
        self.refused: list[str] = []
        self.proxy = Proxy(f"http://{backend.host}", hook=self._hook)

    @property
    def host(self) -> str:
        return self.proxy.host

    def stop(self) -> None:
        self.proxy.stop()

    def _hook(self, req):
        from http_proxy import Reply
        import json as _json
        path = req.path.split("?")[0]
        if path == f"/service/rest/v1/repositories/docker/hosted/{self.hosted}":
            basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            if req.headers.get("authorization") != f"Basic {basic}":
                return Reply(403, {}, b"")
            return Reply(200, {"Content-Type": "application/json"}, _json.dumps({
                "name": self.hosted, "format": "docker", "type": "hosted", "online": True,
                "storage": {"blobStoreName": "default", "strictContentTypeValidation": True,
                            "writePolicy": "ALLOW_ONCE"}}).encode())
        if req.method != "PUT" or "/manifests/" not in path:
            return None
        repo, _, ref = path[len("/v2/"):].rpartition("/manifests/")
        if ref.startswith("sha256:") or self.backend.manifest_digest(repo, ref) is None:
            return None
        self.refused.append(f"{repo}:{ref}")
        return Reply(400, {"Content-Type": "application/json"}, _json.dumps({"errors": [{
            "code": "DENIED", "message": f"Repository does not allow updating assets: {self.hosted}"}]}).encode())
