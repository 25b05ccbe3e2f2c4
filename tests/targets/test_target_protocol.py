"""Edge cases of target quirks through httpx.MockTransport (answers as the registries document them,
../shared/REGISTRIES.md); the end-to-end behaviour is in test_target_{nexus,ecr,harbor,generic}.py."""

from __future__ import annotations

import json

import httpx
import pytest

from airgap.errors import RegistryError
from airgap.model import Descriptor, sha256_digest
from airgap.model.manifest import parse_manifest
from airgap.places.registry import RegistryStore
from airgap.registry.client import RegistryClient, RegistryOptions, Target
from airgap.registry.credentials import Credentials, CredentialSource
from airgap.targets import kind
from airgap.targets.kinds import nexus

MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": "sha256:" + "a" * 64, "size": 2}, "layers": []}).encode()
M = parse_manifest(MANIFEST)


class Rotating(CredentialSource):
    """ECR-like: a new token per renewal."""

    def __init__(self):
        self.n = 1

    def get(self) -> Credentials:
        return Credentials("AWS", f"token-{self.n}")

    def renew(self, rejected: Credentials) -> Credentials:
        self.n += 1
        return self.get()


def _client(handler, source=None, **opts) -> RegistryClient:
    opts.setdefault("backoff", 0.001)
    return RegistryClient("reg.example:5000", RegistryOptions(**opts), transport=httpx.MockTransport(handler),
                          credentials=source)


def _basic_token(req: httpx.Request) -> str:
    import base64
    return base64.b64decode(req.headers["authorization"][6:]).decode().split(":", 1)[1]


@pytest.mark.parametrize("status", [401, 403])
def test_expired_ecr_token_is_renewed_and_the_request_retried(status):
    seen = []

    def handler(req):
        if "authorization" not in req.headers:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="https://reg.example:5000/"'})
        token = _basic_token(req)
        seen.append(token)
        if token == "token-1" and len(seen) > 1:
            return httpx.Response(status, json={"errors": [{"code": "DENIED", "message":
                                  "Your authorization token has expired. Reauthenticate and try again."}]})
        return httpx.Response(200, headers={"Docker-Content-Digest": str(M.digest)})

    source = Rotating()
    store = RegistryStore(_client(handler, source), "app")
    assert store.resolve_tag("1") == M.digest
    assert store.resolve_tag("2") == M.digest  # token-1 refused: renewed to token-2, retried
    assert seen == ["token-1", "token-1", "token-2"] and source.n == 2


def test_a_real_403_is_not_mistaken_for_expiry():
    def handler(req):
        if "authorization" not in req.headers:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="x"'})
        return httpx.Response(403, json={"errors": [{"code": "DENIED", "message": "not allowed to push"}]})

    source = Rotating()
    with pytest.raises(RegistryError, match="not allowed to push"):
        RegistryStore(_client(handler, source), "app").put_manifest(M, "1")
    assert source.n == 1


def test_ecr_tag_invalid_for_the_same_digest_is_success_and_otherwise_names_the_tag():
    state = {"digest": str(M.digest)}

    def handler(req):
        if req.method == "PUT":
            return httpx.Response(400, json={"errors": [{"code": "TAG_INVALID", "message":
                                  "The image tag '1' already exists in the 'app' repository and cannot be "
                                  "overwritten because the repository is immutable."}]})
        return httpx.Response(200, headers={"Docker-Content-Digest": state["digest"]})

    store = RegistryStore(_client(handler), "app")
    store.put_manifest(M, "1")
    state["digest"] = "sha256:" + "e" * 64
    with pytest.raises(RegistryError, match=r"tag app:1 is immutable and points at sha256:eee"):
        store.put_manifest(M, "1")


def test_no_mount_kind_sends_no_mount_request():
    calls = []

    def handler(req):
        calls.append(req.method)
        return httpx.Response(201)

    client = _client(handler)
    src = RegistryStore(client, "a", mount=kind("nexus").mount)
    dst = RegistryStore(client, "b", mount=kind("nexus").mount)
    assert dst.mount_blob(Descriptor("x", sha256_digest(b"hi"), 2), src) is False and calls == []
    assert kind("ecr").mount is False and kind("harbor").mount is True


def test_nexus_repository_endpoint_routing():
    target, api_root = nexus.route(Target.parse("nexus.example.com/repository/docker-hosted/haystack"))
    assert (target.host, target.prefix, api_root) == ("nexus.example.com", "docker-hosted/haystack",
                                                      "/repository/docker-hosted")
    client = RegistryClient("nexus.example.com", RegistryOptions(), api_root=api_root)
    try:
        assert client.repo_path("docker-hosted/haystack/opensearch") == \
            "/repository/docker-hosted/v2/haystack/opensearch"
        assert client.api_name("docker-hosted/haystack/opensearch") == "haystack/opensearch"
    finally:
        client.close()
    same, root = nexus.route(Target.parse("nexus.example.com:8082/haystack"))  # a port connector
    assert root == "" and same.prefix == "haystack"
