"""Amazon ECR, as far as it can run here: moto_server is the ECR control plane (CreateRepository, tag
mutability, GetAuthorizationToken) and a real Distribution registry the data plane, with htpasswd
credentials ``AWS:<the token moto issues>``.

A stand-in for ECR's data plane, because ECR itself cannot be reached from here: a small proxy in front
of the registry adds what only ECR's data plane does: pushes into a repository that the control plane
does not know fail (NAME_UNKNOWN), an IMMUTABLE repository refuses to move an existing tag (400
TAG_INVALID), and, when told to, the token expires mid-load (403 DENIED "Your authorization token has
expired") until the client fetches a new one from the control plane (a second proxy in front of moto
counts GetAuthorizationToken calls).

Test modules import the fixtures (``moto_server``, ``ecr``) by name.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from http_proxy import Proxy, Reply, Request
from registry_server import _die_with_parent, free_port

ACCOUNT = "123456789012"  # moto's default account
TOKEN_PASSWORD = f"{ACCOUNT}-auth-token"  # what moto's GetAuthorizationToken encodes after "AWS:"
EXPIRED = json.dumps({"errors": [{"code": "DENIED", "message": "Your authorization token has expired. "
                                                               "Reauthenticate and try again."}]}).encode()


@pytest.fixture
def moto_server(tmp_path):
    pytest.importorskip("boto3", reason="the ecr extra is part of the test extra: run `make test`")
    port = free_port()
    log = open(tmp_path / "moto.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=_die_with_parent)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not start: {(tmp_path / 'moto.log').read_text()[-2000:]}")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class FakeEcrDataPlane:
    """State shared by the two proxies."""

    def __init__(self, moto_url: str, registry):
        import boto3
        self.ecr = boto3.client("ecr", endpoint_url=moto_url, region_name="us-east-1",
                                aws_access_key_id="testing", aws_secret_access_key="testing")
        self.registry = registry
        self.token_calls = 0
        self.requests = 0
        self.expire_at_request: int | None = None
        self.expired_before_call: int | None = None  # tokens fetched up to this count are expired
        self.expired_answers = 0
        self.ctl = Proxy(moto_url, hook=self._control)
        self.data = Proxy(f"http://{registry.host}", hook=self._data)

    def stop(self) -> None:
        self.ctl.stop()
        self.data.stop()

    def _control(self, req: Request) -> Reply | None:
        if req.headers.get("x-amz-target", "").endswith("GetAuthorizationToken"):
            self.token_calls += 1
        return None

    def _repo(self, name: str) -> dict | None:
        try:
            return self.ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
        except self.ecr.exceptions.RepositoryNotFoundException:
            return None

    def _data(self, req: Request) -> Reply | None:
        path = req.path.split("?")[0]
        if path == "/v2/" or "authorization" not in req.headers:
            return None  # the registry's own Basic challenge
        self.requests += 1
        if self.expire_at_request is not None and self.requests >= self.expire_at_request \
                and self.expired_before_call is None:
            self.expired_before_call = self.token_calls
        if self.expired_before_call is not None and self.token_calls <= self.expired_before_call:
            self.expired_answers += 1
            return Reply(403, {"Content-Type": "application/json"}, EXPIRED)
        parts = path[len("/v2/"):].split("/")
        for kind in ("blobs", "manifests"):
            if kind in parts:
                repo = "/".join(parts[:parts.index(kind)])
                break
        else:
            return None
        info = self._repo(repo) if req.method in ("POST", "PUT", "PATCH") else True
        if info is None:
            return Reply(404, {"Content-Type": "application/json"}, json.dumps({"errors": [{
                "code": "NAME_UNKNOWN", "message": f"The repository with name '{repo}' does not exist in the "
                                                   f"registry with id '{ACCOUNT}'"}]}).encode())
        ref = parts[-1]
        if req.method == "PUT" and kind == "manifests" and not ref.startswith("sha256:") \
                and info["imageTagMutability"] == "IMMUTABLE" and self.registry.manifest_digest(repo, ref):
            return Reply(400, {"Content-Type": "application/json"}, json.dumps({"errors": [{
                "code": "TAG_INVALID", "message": f"The image tag '{ref}' already exists in the '{repo}' repository "
                                                  "and cannot be overwritten because the repository is immutable."}]}).encode())
        return None


@pytest.fixture
def ecr(moto_server, registry_factory):
    plane = FakeEcrDataPlane(moto_server, registry_factory(credentials=("AWS", TOKEN_PASSWORD)))
    try:
        yield plane
    finally:
        plane.stop()


def ecr_env(plane: FakeEcrDataPlane) -> dict:
    return {"AWS_ENDPOINT_URL_ECR": f"http://{plane.ctl.host}", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
