"""Auth-file keys per namespace (containers-auth.json(5)): ``HOST/team-a`` before ``HOST``.

The lookup is driven through real files in a temporary HOME; the client tests use the real
RegistryClient and RegistryStore over httpx.MockTransport (a token service and a registry in one
handler), so what is checked is what goes over the wire.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import httpx
import pytest

from airgap.errors import AuthError, InputError
from airgap.model import Descriptor, Digest
from airgap.places.registry import RegistryStore
from airgap.registry import credentials as creds
from airgap.registry.client import RegistryClient, RegistryOptions

HOST = "reg.example:5000"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _entry(user: str) -> dict:
    return {"auth": _b64(f"{user}:{user}-secret")}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME with no auth files anywhere (REGISTRY_AUTH_FILE, XDG, DOCKER_CONFIG unset)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "DOCKER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _write(path: Path, doc: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def _containers_auth(home: Path, auths: dict, **extra: object) -> Path:
    return _write(home / ".config" / "containers" / "auth.json", {"auths": auths, **extra})


def _docker_config(home: Path, auths: dict, **extra: object) -> Path:
    return _write(home / ".docker" / "config.json", {"auths": auths, **extra})


def _user(host: str, repository: str) -> str | None:
    found = creds.lookup(host, repository=repository).credentials
    return found.username if found else None


def test_the_most_specific_key_wins_then_the_host(home):
    path = _containers_auth(home, {HOST: _entry("b"), f"{HOST}/team-a": _entry("a"),
                                   f"{HOST}/team-a/app": _entry("app")})
    assert _user(HOST, "team-a/app/api") == "app"
    assert _user(HOST, "team-a/app") == "app"
    assert _user(HOST, "team-a/web") == "a"
    assert _user(HOST, "other/web") == "b"
    assert _user(HOST, "") == "b"  # registry-wide requests use the host's own entry
    found = creds.lookup(HOST, repository="team-a/web")
    assert found.origin() == f"{path} key {HOST}/team-a"
    assert "secret" not in found.origin() and "secret" not in repr(found)


def test_keys_match_whole_path_components_only(home):
    _containers_auth(home, {"quay.io/team": _entry("team")})
    assert _user("quay.io", "teamster/app") is None
    assert _user("quay.io", "team/app") == "team"
    assert _user("quay.io", "team") == "team"
    assert creds.repository_keys("quay.io", "team/app") == ["quay.io/team/app", "quay.io/team"]


def test_namespaced_keys_never_serve_another_host(home):
    _containers_auth(home, {"quay.io/team-a": _entry("a"), "quay.io": _entry("q")})
    assert _user("quay.io.evil.example", "team-a/app") is None
    assert _user("evil.example", "quay.io/team-a") is None


def test_docker_hub_namespaced_keys_under_every_alias(home):
    _containers_auth(home, {"docker.io/myorg": _entry("org"), "docker.io/library": _entry("lib")})
    _docker_config(home, {"https://index.docker.io/v1/": _entry("hub")})
    for hub in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        assert _user(hub, "myorg/app") == "org"
        assert _user(hub, "nginx") == "lib"  # nginx is docker.io/library/nginx
        assert _user(hub, "library/nginx") == "lib"
        assert _user(hub, "someone/else") == "hub"  # docker login's Hub key, from config.json
    # podman writes docker.io/<org>; a key spelt after another Hub alias works the same way
    _containers_auth(home, {"index.docker.io/myorg": _entry("legacy")})
    assert _user("docker.io", "myorg/app") == "legacy"


def test_file_order_comes_before_key_specificity(home, monkeypatch):
    # containers/image stops at the first file holding any match: a host key in auth.json beats a
    # namespaced key in docker's config.json.
    _docker_config(home, {f"{HOST}/team-a": _entry("docker-ns")})
    _containers_auth(home, {HOST: _entry("containers-host")})
    assert _user(HOST, "team-a/app") == "containers-host"
    runtime = home / "run"
    _write(runtime / "containers" / "auth.json", {"auths": {f"{HOST}/team-a": _entry("runtime-ns")}})
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert _user(HOST, "team-a/app") == "runtime-ns"
    assert _user(HOST, "other/app") == "containers-host"
    explicit = _write(home / "explicit.json", {"auths": {f"{HOST}/other": _entry("explicit")}})
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(explicit))  # replaces both containers files
    assert _user(HOST, "other/app") == "explicit"
    assert _user(HOST, "team-a/app") == "docker-ns"


def test_docker_config_namespaced_keys_are_honoured(home):
    _docker_config(home, {f"{HOST}/team-a": _entry("a"), f"https://{HOST}": _entry("b")})
    assert _user(HOST, "team-a/app") == "a" and _user(HOST, "other/app") == "b"


def test_explicit_credentials_serve_every_repository_of_their_host_only(home):
    _containers_auth(home, {f"{HOST}/team-a": _entry("a"), "quay.io": _entry("q")})
    opts = RegistryOptions(username="flag", password="pw", credentials_for=HOST)
    target = creds.RepositoryCredentials(HOST, opts.explicit_for(HOST), "--username")
    assert target.source("team-a/app").get() == creds.Credentials("flag", "pw")
    other = creds.RepositoryCredentials("quay.io", opts.explicit_for("quay.io"))
    found = other.source("team-a/app").get()
    assert found is not None and found.username == "q"


def test_a_malformed_entry_is_one_line_naming_file_and_key(home):
    path = _containers_auth(home, {f"{HOST}/team-a": {"auth": "not base64!"}, HOST: _entry("b")})
    with pytest.raises(InputError) as err:
        creds.lookup(HOST, repository="team-a/app")
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and f"{HOST}/team-a" in msg
    assert _user(HOST, "other/app") == "b"  # only a lookup that reaches the bad key fails
    _containers_auth(home, ["x"])  # type: ignore[arg-type]
    with pytest.raises(InputError, match="auths in a registry auth file must be a JSON object"):
        creds.lookup(HOST, repository="team-a/app")


def test_a_host_helper_comes_before_namespaced_entries_and_is_asked_once(home, monkeypatch):
    bin_dir = home / "bin"
    bin_dir.mkdir()
    calls = home / "calls"
    helper = bin_dir / "docker-credential-fake"
    helper.write_text(f"#!/bin/sh\ncat >> {calls}\necho\n"
                      "echo '{\"Username\": \"helped\", \"Secret\": \"s\"}'\n")
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    _containers_auth(home, {f"{HOST}/team-a": _entry("a")}, credHelpers={HOST: "fake"})
    per_repo = creds.RepositoryCredentials(HOST)
    for repo in ("team-a/app", "other/app", "team-a/app"):
        found = per_repo.source(repo).get()
        assert found is not None and found.username == "helped"
    assert calls.read_text().split() == [HOST]  # one helper run for the whole host
    assert "credHelpers" in per_repo.source("other/app").describe()


# -- the client: which credentials go with which repository --------------------------------------

def _bearer_registry(token_log: list[tuple[str, str | None]], requests: list[httpx.Request]):
    """A registry behind a token service; a token names the user it was issued to."""
    realm = f"https://{HOST}/token"

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/token":
            auth = req.headers.get("authorization")
            user = base64.b64decode(auth.split()[1]).decode().split(":")[0] if auth else "anonymous"
            token_log.append((req.url.params.get("scope", ""), user))
            return httpx.Response(200, json={"token": f"tok-{user}", "expires_in": 300})
        requests.append(req)
        if not req.headers.get("authorization", "").startswith("Bearer tok-"):
            return httpx.Response(401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="reg"'})
        if "/blobs/uploads/" in req.url.path:
            return httpx.Response(201, headers={"Location": f"/v2/x/blobs/{req.url.params.get('mount')}"})
        if req.url.path.endswith("/manifests/denied"):
            return httpx.Response(403, json={"errors": [{"code": "DENIED", "message": "no"}]})
        return httpx.Response(404)

    return handler


def _client(handler) -> RegistryClient:
    return RegistryClient(HOST, RegistryOptions(backoff=0.001), transport=httpx.MockTransport(handler))


def _team_a_and_host(home: Path) -> Path:
    return _containers_auth(home, {f"{HOST}/team-a": _entry("alice"), HOST: _entry("bob")})


def test_each_repository_gets_a_token_for_its_own_credentials(home):
    _team_a_and_host(home)
    tokens: list[tuple[str, str | None]] = []
    requests: list[httpx.Request] = []
    client = _client(_bearer_registry(tokens, requests))
    for repo in ("team-a/app", "other/app", "team-a/app", "other/app"):
        assert RegistryStore(client, repo).resolve("1") is None
    assert tokens == [("repository:team-a/app:pull", "alice"), ("repository:other/app:pull", "bob")]
    sent = {(r.url.path.split("/manifests/")[0], r.headers.get("authorization")) for r in requests}
    assert ("/v2/team-a/app", "Bearer tok-alice") in sent and ("/v2/other/app", "Bearer tok-bob") in sent
    assert ("/v2/team-a/app", "Bearer tok-bob") not in sent and ("/v2/other/app", "Bearer tok-alice") not in sent


def test_no_mount_across_identities_but_within_one(home):
    _team_a_and_host(home)
    tokens: list[tuple[str, str | None]] = []
    requests: list[httpx.Request] = []
    client = _client(_bearer_registry(tokens, requests))
    desc = Descriptor("application/octet-stream", Digest("sha256", "b" * 64), 1)
    # bob's token must not cover alice's repository: refused before anything is sent (the copy
    # engine uploads instead, as for any refused mount)
    with pytest.raises(AuthError, match="different credentials") as err:
        RegistryStore(client, "other/app").mount_blob(desc, RegistryStore(client, "team-a/app"))
    assert "secret" not in str(err.value) and f"key {HOST}/team-a" in str(err.value)
    assert not requests and not tokens
    assert RegistryStore(client, "team-a/web").mount_blob(desc, RegistryStore(client, "team-a/app"))
    assert tokens == [("repository:team-a/web:pull,push", "alice")]
    assert all(r.headers.get("authorization") in (None, "Bearer tok-alice") for r in requests)


def test_a_refusal_names_the_key_used_never_the_secret(home):
    path = _team_a_and_host(home)
    client = _client(_bearer_registry([], []))
    with pytest.raises(AuthError) as err:
        RegistryStore(client, "team-a/app").resolve("denied")
    msg = str(err.value)
    assert "'alice'" in msg and f"credentials from {path} key {HOST}/team-a" in msg and "secret" not in msg


def test_a_refused_upload_names_the_key_of_the_repository_it_was_for(home):
    # RegistryStore reports a refused upload with the scope it pushed under: that scope's repository.
    path = _team_a_and_host(home)
    client = _client(_bearer_registry([], []))
    for repo, key, user in (("team-a/app", f"{HOST}/team-a", "alice"), ("other/app", HOST, "bob")):
        url = f"https://{HOST}/v2/{repo}/blobs/uploads/1"
        resp = httpx.Response(401, request=httpx.Request("PUT", url))
        with pytest.raises(AuthError) as err:
            client.raise_for(resp, "upload", f"repository:{repo}:pull,push")
        assert f"as '{user}' (credentials from {path} key {key})" in str(err.value)
