"""The connected side against Docker Hub, Quay and registry.k8s.io as they really behave (offline:
tests/public_registries.py), with the upstream names IMAGES.md really uses."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path

import httpx
import pytest

from helpers import REPO, airgap, run_load, write_images_md
from registry_server import run_skopeo

from airgap import imagesfile
from airgap.emit.mapping import upstream_path
from airgap.model.reference import Reference
from synth import LayerSpec, add_image

K8S_IMAGE = "registry.k8s.io/pause:3.10"
TARGET_USER, TARGET_PASSWORD = "target-user", "target-secret-9f2c"


def third_party_sources() -> list[tuple[str, str]]:
    """(name, source) of every mirrored image of the repository's own IMAGES.md, plus one from registry.k8s.io."""
    spec = imagesfile.load(REPO / "IMAGES.md")
    out = [(e.name, e.source) for e in spec.images if e.source and not e.source.startswith("oci:")]
    assert any(s.startswith("docker.io/") for _, s in out) and any(s.startswith("quay.io/") for _, s in out)
    return out + [("pause", K8S_IMAGE)]


def seed_all(pub, tmp: Path, sources: list[tuple[str, str]]) -> dict[str, str]:
    layout = tmp / "synthetic"
    digests = {}
    for n, (name, source) in enumerate(sources):
        platforms = ["linux/amd64", "linux/arm64"] if n % 2 == 0 else None
        add_image(layout, name, layers=[LayerSpec(size=(1 + n % 2) << 19, seed=500 + n, compressed=n % 2 == 1)],
                  platforms=platforms)
        digests[name] = pub.seed(layout, name, source)
    return digests


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_bundle_of_the_real_upstream_names_then_load(public_registries, registry_factory, tmp_path):
    pub = public_registries
    sources = third_party_sources()
    digests = seed_all(pub, tmp_path, sources)
    images_md = write_images_md(tmp_path / "IMAGES.md", "1.0.0", [{"name": n, "source": s} for n, s in sources])
    out = tmp_path / "b.tar"
    # Target credentials in the environment (as a pipeline that also loads would have them): they
    # belong to the target registry and must reach no upstream.
    env = {**pub.env(), "AIRGAP_REGISTRY_USERNAME": TARGET_USER, "AIRGAP_REGISTRY_PASSWORD": TARGET_PASSWORD,
           "HOME": str(tmp_path / "home")}
    result = json.loads(airgap("bundle", "--images", str(images_md), "-o", str(out), "--no-chart", "--no-crds",
                               "--store", str(tmp_path / "store"), "--json", env=env).stdout)
    assert {i["name"]: i["digest"] for i in result["images"]} == digests

    # Nothing went to docker.io (a name, not an API) or anywhere not emulated.
    assert pub.refused == [] and pub.requests_to("docker.io") == []
    assert pub.requests_to("registry-1.docker.io") and pub.requests_to("production.cloudflare.docker.com")
    assert pub.requests_to("us-west1-docker.pkg.dev") and pub.requests_to("cdn01.quay.io")
    # No upstream request carried the target's credentials, and no redirect target any Authorization.
    assert all(e.authorization != basic(TARGET_USER, TARGET_PASSWORD) for e in pub.log)
    assert all(e.authorization is None for e in pub.log if e.host in (
        "production.cloudflare.docker.com", "cdn01.quay.io", "us-west1-docker.pkg.dev", "auth.docker.io"))
    # Attachment discovery asks for what may not exist (referrers listing, sha256-<hex> index and
    # cosign tags): 404 is how a registry says there is none; anything else must succeed.
    failed = [(e.host, e.method, e.path, e.status) for e in pub.log
              if e.status >= 400 and not (e.status == 401 and e.authorization is None)
              and not (e.status == 404 and _discovery(e.path))]
    assert failed == []

    private = registry_factory(tls=True, auth=True)
    load_env = {"AIRGAP_REGISTRY_USERNAME": private.username, "AIRGAP_REGISTRY_PASSWORD": private.password}
    run_load(out, private, "mirror", "--values-out", str(tmp_path / "v.yaml"), env=load_env)
    for name, source in sources:
        tag = source.rsplit(":", 1)[1]
        # the default naming keeps the upstream path under the prefix (docker.io/library/busybox, ...)
        ref = Reference.parse(source)
        loaded = f"{private.host}/mirror/{upstream_path(ref.registry, ref.repository)}:{tag}"
        raw = run_skopeo("inspect", "--raw", *private.skopeo_args(), f"docker://{loaded}").stdout
        seeded = run_skopeo("inspect", "--raw", *pub.backend.skopeo_args(),
                            f"docker://{pub.backend.host}/{pub.backend_repository(source.rsplit(':', 1)[0])}:{tag}").stdout
        assert raw == seeded, f"{name}: loaded manifest differs from upstream"
        import hashlib
        assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == digests[name]


@pytest.mark.parametrize("file_kind", ["containers-auth", "docker-config"])
def test_hub_credentials_from_an_auth_file_reach_auth_docker_io_only(public_registries, tmp_path, file_kind):
    pub = public_registries
    pub.users["hubuser"] = "hub-password-1"
    pub.private["docker.io/acme/private-app"] = {"hubuser"}
    layout = tmp_path / "l"
    add_image(layout, "app", layers=[LayerSpec(size=1 << 18, seed=7)])
    digest = pub.seed(layout, "app", "docker.io/acme/private-app:1.0")
    images_md = write_images_md(tmp_path / "IMAGES.md", "1.0.0", [
        {"name": "app", "source": "acme/private-app:1.0"},  # a short Docker Hub name
        {"name": "busybox", "source": "busybox:1.36.1"}])
    add_image(layout, "bb", layers=[LayerSpec(size=1 << 18, seed=8)])
    pub.seed(layout, "bb", "docker.io/library/busybox:1.36.1")
    home = tmp_path / "home"
    home.mkdir()
    env = {**pub.env(), "HOME": str(home), "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    bundle = ["bundle", "--images", str(images_md), "-o", str(tmp_path / "b.tar"), "--no-chart", "--no-crds",
              "--store", str(tmp_path / "store")]

    denied = airgap(*bundle, env=env, check=False)
    assert denied.returncode == 4
    last = denied.stderr.strip().splitlines()[-1]
    assert "docker.io" in last and "acme/private-app" in last and "auth.json" in last and "config.json" in last

    auth = {"auths": {("docker.io" if file_kind == "containers-auth" else "https://index.docker.io/v1/"):
                      {"auth": base64.b64encode(b"hubuser:hub-password-1").decode()}}}
    if file_kind == "containers-auth":
        path = tmp_path / "auth.json"
        env["REGISTRY_AUTH_FILE"] = str(path)
    else:
        path = home / ".docker" / "config.json"
        path.parent.mkdir()
    path.write_text(json.dumps(auth))
    pub.log.clear()
    result = json.loads(airgap(*bundle, "--json", env=env).stdout)
    assert {i["name"]: i["digest"] for i in result["images"]}["app"] == digest
    hub_basic = basic("hubuser", "hub-password-1")
    carrying = {e.host for e in pub.log if e.authorization == hub_basic}
    assert carrying == {"auth.docker.io"}
    assert all((e.authorization or "Bearer").startswith("Bearer") for e in pub.requests_to("registry-1.docker.io"))


def test_hub_namespace_keys_send_each_organisation_its_own_account(public_registries, tmp_path):
    """`podman login docker.io/team-a` writes the key ``docker.io/team-a``: one account per Hub
    organisation. Each private repository's token is asked for with its own organisation's account;
    the host-level key (a third account, allowed nowhere) is never used for them."""
    pub = public_registries
    accounts = {"alice": "alice-hub-pw", "bob": "bob-hub-pw", "carol": "carol-hub-pw"}
    pub.users.update(accounts)
    pub.private["docker.io/team-a/app"] = {"alice"}
    pub.private["docker.io/team-b/app"] = {"bob"}
    layout = tmp_path / "l"
    for n, seed in (("a", 21), ("b", 22)):
        add_image(layout, n, layers=[LayerSpec(size=1 << 18, seed=seed)])
    pub.seed(layout, "a", "docker.io/team-a/app:1.0")
    pub.seed(layout, "b", "docker.io/team-b/app:1.0")
    images_md = write_images_md(tmp_path / "IMAGES.md", "1.0.0", [
        {"name": "a", "source": "docker.io/team-a/app:1.0"}, {"name": "b", "source": "team-b/app:1.0"}])
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {
        key: {"auth": base64.b64encode(f"{user}:{accounts[user]}".encode()).decode()}
        for key, user in (("docker.io/team-a", "alice"), ("docker.io/team-b", "bob"), ("docker.io", "carol"))}}))
    home = tmp_path / "home"
    home.mkdir()
    env = {**pub.env(), "HOME": str(home), "XDG_RUNTIME_DIR": str(tmp_path / "run"), "REGISTRY_AUTH_FILE": str(auth)}
    airgap("bundle", "--images", str(images_md), "-o", str(tmp_path / "b.tar"), "--no-chart", "--no-crds",
           "--store", str(tmp_path / "store"), env=env)

    def scopes_of(user: str) -> set[str]:
        return {e.path for e in pub.requests_to("auth.docker.io") if e.authorization == basic(user, accounts[user])}

    assert scopes_of("alice") and all("team-a%2Fapp" in p or "team-a/app" in p for p in scopes_of("alice"))
    assert scopes_of("bob") and all("team-b%2Fapp" in p or "team-b/app" in p for p in scopes_of("bob"))
    assert not any("team-" in p for p in scopes_of("carol"))
    hub_accounts = {basic(u, pw) for u, pw in accounts.items()}
    assert not any(e.authorization in hub_accounts for e in pub.log if e.host != "auth.docker.io")


def test_preflight_fails_on_a_missing_upstream_tag_before_any_build(public_registries, tmp_path):
    pub = public_registries
    layout = tmp_path / "l"
    add_image(layout, "os", layers=[LayerSpec(size=1 << 18, seed=9)])
    pub.seed(layout, "os", "docker.io/opensearchproject/opensearch:2.18.0")
    images_md = write_images_md(tmp_path / "IMAGES.md", "1.0.0", [
        {"name": "app", "build": "{context: ., dockerfile: Dockerfile}"},
        {"name": "opensearch", "source": "docker.io/opensearchproject/opensearch:2.18.9"}])
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    # A build would fail at once here (no Docker daemon at DOCKER_HOST): the preflight must come first.
    env = {**pub.env(), "HOME": str(tmp_path), "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    proc = airgap("bundle", "--images", str(images_md), "-o", str(tmp_path / "b.tar"), "--no-chart", "--no-crds",
                  "--builder", "docker", "--store", str(tmp_path / "store"), env=env, check=False)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert f"{images_md}:" in last and "image opensearch" in last and "has no tag 2.18.9" in last, last


def test_hub_rate_limit_is_reported_with_the_wait(public_registries, tmp_path):
    pub = public_registries
    layout = tmp_path / "l"
    add_image(layout, "bb", layers=[LayerSpec(size=1 << 18, seed=3)])
    pub.seed(layout, "bb", "docker.io/library/busybox:1.36.1")
    pub.rate_limited = True
    images_md = write_images_md(tmp_path / "IMAGES.md", "1.0.0", [{"name": "busybox", "source": "busybox:1.36.1"}])
    proc = airgap("bundle", "--images", str(images_md), "-o", str(tmp_path / "b.tar"), "--no-chart", "--no-crds",
                  "--store", str(tmp_path / "store"), env={**pub.env(), "HOME": str(tmp_path)}, check=False, timeout=60)
    assert proc.returncode == 4
    last = proc.stderr.strip().splitlines()[-1]
    assert "docker.io" in last and "pull rate limit" in last and "6 h" in last and "docker login" in last, last
    # Reported at once, not retried against a spent quota.
    assert len([e for e in pub.requests_to("registry-1.docker.io") if e.status == 429]) == 1


def test_verbose_prints_one_line_per_request_without_secrets(public_registries, tmp_path):
    pub = public_registries
    layout = tmp_path / "l"
    add_image(layout, "bb", layers=[LayerSpec(size=1 << 18, seed=4)])
    pub.seed(layout, "bb", "docker.io/library/busybox:1.36.1")
    images_md = write_images_md(tmp_path / "IMAGES.md", "1.0.0", [{"name": "busybox", "source": "busybox:1.36.1"}])
    proc = airgap("-v", "bundle", "--images", str(images_md), "-o", str(tmp_path / "b.tar"), "--no-chart",
                  "--no-crds", "--store", str(tmp_path / "store"), env={**pub.env(), "HOME": str(tmp_path)})
    lines = [ln for ln in proc.stderr.splitlines() if "https://" in ln]
    assert any(ln.startswith("DEBUG GET https://registry-1.docker.io/v2/library/busybox/manifests/1.36.1 200 ")
               and ln.endswith(" ms") for ln in lines), proc.stderr
    cdn = [ln for ln in lines if "production.cloudflare.docker.com" in ln]
    assert cdn and all("verify=***" in ln for ln in cdn)
    assert "httpcore" not in proc.stderr and "Bearer" not in proc.stderr
    assert len(lines) == len([e for e in pub.log])  # exactly one line per request


def test_the_emulation_is_as_strict_as_the_real_registries(public_registries, tmp_path):
    pub = public_registries
    layout = tmp_path / "l"
    add_image(layout, "bb", layers=[LayerSpec(size=1 << 16, seed=5)])
    pub.seed(layout, "bb", "docker.io/library/busybox:1.36.1")
    proxy = pub.env()["HTTPS_PROXY"]
    import ssl
    with httpx.Client(proxy=proxy, verify=ssl.create_default_context(cafile=str(pub.ca_file)), timeout=30) as c:
        assert c.get("https://docker.io/v2/").status_code == 301
        assert c.get("https://registry-1.docker.io/v2/library/busybox/manifests/1.36.1").status_code == 401
        other = c.get("https://auth.docker.io/token", params={"service": "registry.docker.io",
                                                             "scope": "repository:library/alpine:pull"}).json()
        wrong_scope = c.get("https://registry-1.docker.io/v2/library/busybox/manifests/1.36.1",
                            headers={"Authorization": f"Bearer {other['token']}"})
        assert wrong_scope.status_code == 401 and "insufficient_scope" in wrong_scope.headers["www-authenticate"]
        assert c.get("https://auth.docker.io/token", params={"service": "quay.io"}).status_code == 400
        tok = c.get("https://auth.docker.io/token", params={"service": "registry.docker.io",
                                                           "scope": "repository:library/busybox:pull"}).json()["token"]
        bearer = {"Authorization": f"Bearer {tok}", "Accept": "application/vnd.oci.image.manifest.v1+json"}
        m = c.get("https://registry-1.docker.io/v2/library/busybox/manifests/1.36.1", headers=bearer)
        assert m.status_code == 200
        blob = m.json()["layers"][0]["digest"]
        hop = c.get(f"https://registry-1.docker.io/v2/library/busybox/blobs/{blob}", headers=bearer)
        assert hop.status_code == 307
        # A client that forwards Authorization across the redirect (httpx's own follow does) fails.
        assert c.get(hop.headers["location"], headers=bearer).status_code == 400
        assert c.get(hop.headers["location"]).status_code == 200
        assert c.get(hop.headers["location"].replace("verify=", "verify=0")).status_code == 403
        assert c.get("https://registry.k8s.io/v2/").status_code == 307
        with pytest.raises(httpx.ProxyError):
            c.get("https://example.com/")  # not emulated: the proxy refuses, nothing leaves the machine
    assert pub.refused == ["example.com:443"]
    # The proxy listens on loopback only.
    port = int(pub.host.rsplit(":", 1)[1])
    assert pub._server.server_address[0] == "127.0.0.1"
    with socket.socket() as s:
        s.settimeout(2)
        try:
            ip = socket.gethostbyname(socket.gethostname())
        except OSError:
            ip = None
        if ip and not ip.startswith("127."):
            assert s.connect_ex((ip, port)) != 0


def _discovery(path: str) -> bool:
    """A request the bundle's attachment discovery makes (airgap.copy discover=)."""
    bare = path.split("?")[0]
    return "/referrers/sha256:" in bare or "/manifests/sha256-" in bare
