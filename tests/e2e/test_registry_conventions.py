"""Conventions users bring from docker, crane, skopeo and podman: reference names, redirects, where
credentials go, loopback over plain HTTP, --registry schemes, --platform lists, sync's flags."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from airgap.errors import InputError, RegistryError
from airgap.model import Reference
from airgap.model.reference import api_host
from airgap.places.registry import RegistryStore
from airgap.registry import credentials as creds
from airgap.registry.client import RegistryClient, RegistryOptions, Target
from synth import LayerSpec, add_image
from helpers import airgap, demo_bundle, load_json, run_load, write_images_md
from registry_server import run_skopeo

MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": "sha256:" + "a" * 64, "size": 2}, "layers": []}).encode()
OCI = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}


@pytest.mark.parametrize("text, canonical", [
    ("busybox:1.36.1", "docker.io/library/busybox:1.36.1"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/busybox:1", "docker.io/library/busybox:1"),
    ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1"),
    ("index.docker.io/busybox:1", "docker.io/library/busybox:1"),
    ("opensearchproject/opensearch:2.18.0", "docker.io/opensearchproject/opensearch:2.18.0"),
    ("quay.io/prometheuscommunity/elasticsearch-exporter:v1.8.0",
     "quay.io/prometheuscommunity/elasticsearch-exporter:v1.8.0"),
])
def test_docker_hub_names_normalise_and_map_to_the_api_host(text, canonical):
    ref = Reference.parse(text)
    assert str(ref) == canonical
    assert ref.api_host == ("registry-1.docker.io" if canonical.startswith("docker.io/") else ref.registry)
    assert api_host("index.docker.io") == api_host("docker.io") == "registry-1.docker.io"


def _client(handler, host="reg.example:5000", **opts) -> RegistryClient:
    opts.setdefault("backoff", 0.001)
    return RegistryClient(host, RegistryOptions(**opts), transport=httpx.MockTransport(handler))


def test_docker_hub_requests_go_to_registry_1():
    seen = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req.url.host)
        return httpx.Response(200, headers={**OCI, "Docker-Content-Digest": "sha256:" + "b" * 64})

    RegistryStore(_client(handler, host="docker.io"), "library/busybox").resolve("1.36.1")
    assert seen == ["registry-1.docker.io"]


@pytest.mark.parametrize("method", ["HEAD", "GET-manifest", "GET-digest", "tags", "referrers"])
def test_every_request_kind_follows_redirects_without_forwarding_authorization(method):
    sent = []

    def handler(req: httpx.Request) -> httpx.Response:
        sent.append((req.method, req.url.host, req.headers.get("authorization")))
        if req.url.host == "reg.example":
            if "authorization" not in req.headers:
                return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
            return httpx.Response(307, headers={"Location": f"https://backend.example{req.url.raw_path.decode()}"})
        if "authorization" in req.headers:
            return httpx.Response(400, text="Only one auth mechanism allowed")
        if "/tags/" in req.url.path or "/referrers/" in req.url.path:
            return httpx.Response(200, json={"tags": ["1"], "manifests": []})
        return httpx.Response(200, content=MANIFEST, headers={**OCI, "Docker-Content-Digest": _digest()})

    client = _client(handler, host="reg.example:443", username="u", password="p")
    store = RegistryStore(client, "a")
    if method == "HEAD":
        assert str(store.resolve("1")) == _digest()
    elif method == "GET-manifest":
        assert str(store.fetch_manifest("1").digest) == _digest()
    elif method == "GET-digest":
        assert str(store.fetch_manifest(_digest()).digest) == _digest()
    else:
        path = "/v2/a/tags/list" if method == "tags" else f"/v2/a/referrers/{_digest()}"
        assert client.request("GET", path, scope="repository:a:pull", ok=(200,)).status_code == 200
    assert any(host == "backend.example" for _, host, _ in sent)
    assert all(auth is None for _, host, auth in sent if host == "backend.example")


def _digest() -> str:
    import hashlib
    return "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


def test_redirect_loops_and_downgrades_are_errors_naming_the_hosts():
    def loop(req: httpx.Request) -> httpx.Response:
        other = "b.example" if req.url.host == "a.example" else "a.example"
        return httpx.Response(302, headers={"Location": f"https://{other}/v2/x/manifests/1"})

    with pytest.raises(RegistryError, match=r"redirect loop \(a\.example -> b\.example -> a\.example\)"):
        RegistryStore(_client(loop, host="a.example"), "x").fetch_manifest("1")

    def downgrade(req: httpx.Request) -> httpx.Response:
        return httpx.Response(301, headers={"Location": "http://cdn.example/blob"})

    with pytest.raises(RegistryError, match=r"from HTTPS \(a\.example\) to plain HTTP \(cdn\.example\)"):
        RegistryStore(_client(downgrade, host="a.example"), "x").fetch_manifest("1")


def test_explicit_credentials_belong_to_one_host_and_auth_files_are_keyed_by_host(tmp_path, monkeypatch):
    opts = RegistryOptions(username="u", password="p", credentials_for="harbor.example")
    assert opts.explicit_for("harbor.example") is not None and opts.explicit_for("docker.io") is None
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    auth_file = tmp_path / "auth.json"
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_file))
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    auth_file.write_text(json.dumps({"auths": {"quay.io": {"auth": b64("q:1")}}}))
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": b64("hub:2")}, "ghcr.io": {"identitytoken": "refresh-me"}}}))
    assert creds.lookup("quay.io").credentials.username == "q"
    for hub in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        found = creds.lookup(hub)
        assert found.credentials.username == "hub" and found.found_in.endswith("config.json")
    assert creds.lookup("ghcr.io").credentials.identity_token == "refresh-me"
    missing = creds.lookup("harbor.example")
    assert missing.credentials is None and str(auth_file) in missing.where() and "config.json" in missing.where()


def test_identity_token_is_exchanged_at_the_token_service(tmp_path, monkeypatch):
    posted = []

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.host == "ghcr.io" and req.url.path == "/token":
            posted.append((req.method, req.content.decode()))
            return httpx.Response(200, json={"access_token": "T"})
        if req.headers.get("authorization") != "Bearer T":
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://ghcr.io/token",service="ghcr.io"'})
        return httpx.Response(200, headers={**OCI, "Docker-Content-Digest": _digest()})

    source = creds.StaticSource(creds.Credentials("", "", identity_token="refresh-me"))
    client = RegistryClient("ghcr.io", RegistryOptions(backoff=0.001), transport=httpx.MockTransport(handler),
                            credentials=source)
    assert str(RegistryStore(client, "o/a").resolve("1")) == _digest()
    assert posted and posted[0][0] == "POST" and "refresh_token=refresh-me" in posted[0][1]
    assert "grant_type=refresh_token" in posted[0][1]


def test_registry_scheme_is_honoured_or_refused():
    assert Target.parse("http://reg.example/p").options(RegistryOptions()).insecure
    assert Target.parse("https://reg.example").options(RegistryOptions()).tls_only
    with pytest.raises(InputError, match="contradicts --insecure-registry"):
        Target.parse("https://reg.example").options(RegistryOptions(insecure=True))


def test_loopback_registry_over_plain_http_without_a_flag(tmp_path, registry):
    bundle = demo_bundle(tmp_path)
    proc = run_load(bundle, registry, "plain", "--values-out", str(tmp_path / "v.yaml"), tls=[])
    assert "does not speak TLS; using plain HTTP" in proc.stderr
    assert "plain/opensearch" in registry.catalog()
    # http:// says so up front: no TLS attempt, no note; https:// insists on TLS.
    quiet = airgap("load", "--insecure-skip-verify", str(bundle), "--registry", f"http://{registry.host}/scheme",
                   "--values-out", str(tmp_path / "w.yaml"))
    assert "plain HTTP" not in quiet.stderr and "scheme/opensearch" in registry.catalog()
    tls = airgap("load", "--insecure-skip-verify", str(bundle), "--registry", f"https://{registry.host}/tls",
                 "--values-out", str(tmp_path / "x.yaml"), check=False)
    assert tls.returncode == 4 and registry.host in tls.stderr


def test_platform_comma_list_and_all(tmp_path, registry):
    layout = tmp_path / "src"
    add_image(layout, "multi", layers=[LayerSpec(size=1 << 18, seed=21)],
              platforms=["linux/amd64", "linux/arm64", "linux/s390x"])
    run_skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:multi",
               f"docker://{registry.host}/library/opensearch:2.18.0")
    images_md = write_images_md(tmp_path / "IMAGES.md", "0.1.0", [
        {"name": "opensearch", "source": f"{registry.host}/library/opensearch:2.18.0"}],
        extra="platforms: [linux/amd64]")

    def platforms(*flags: str) -> list[str]:
        out = json.loads(airgap("bundle", "--images", str(images_md), "-o", str(tmp_path / "b.tar"), "--no-chart",
                                "--store", str(tmp_path / "store"), "--json", *flags).stdout)
        return sorted(p.split("/")[1] for p in out["images"][0]["platforms"])

    assert platforms() == ["amd64"]
    assert platforms("--platform", "linux/amd64,linux/arm64") == ["amd64", "arm64"]
    assert platforms("--platform", "all") == ["amd64", "arm64", "s390x"]
    bad = airgap("bundle", "--images", str(images_md), "-o", str(tmp_path / "c.tar"), "--platform", "all,linux/amd64",
                 check=False)
    assert bad.returncode == 2 and "--platform all" in bad.stderr


def test_username_alone_without_a_terminal_asks_for_a_password_source(tmp_path):
    proc = airgap("probe", "--registry", "127.0.0.1:9", "--username", "u", check=False, input="")
    assert proc.returncode == 2 and "--password-stdin" in proc.stderr and "terminal" in proc.stderr


def test_sync_gets_separate_source_and_destination_credentials(tmp_path, registry_factory):
    src = registry_factory(tls=True, auth=True)
    dst = registry_factory(tls=True, auth=True)
    assert src.password != dst.password
    bundle = demo_bundle(tmp_path)
    run_load(bundle, src, "dmz", "--values-out", str(tmp_path / "v.yaml"),
             env={"AIRGAP_REGISTRY_USERNAME": src.username, "AIRGAP_REGISTRY_PASSWORD": src.password})
    images_md = write_images_md(tmp_path / "SYNC.md", "0.1.0", [{"name": "opensearch", "source": "oci:x:y",
                                                                 "tag": "2.18.0"}])
    env = {"AIRGAP_FROM_REGISTRY_USERNAME": src.username, "AIRGAP_FROM_REGISTRY_PASSWORD": src.password,
           "AIRGAP_REGISTRY_USERNAME": dst.username, "AIRGAP_REGISTRY_PASSWORD": dst.password}
    report = load_json("sync", "--images", str(images_md), "--from", f"{src.host}/dmz", "--to", f"{dst.host}/inner",
                       "--from-ca-file", str(src.ca_file), "--to-ca-file", str(dst.ca_file), env=env)
    assert report["blobs_uploaded"] >= 1 or report.get("images")
    assert "inner/opensearch" in dst.catalog()
    # The destination's credentials are not the source's: swapping them fails on the source, naming it.
    swapped = airgap("sync", "--images", str(images_md), "--from", f"{src.host}/dmz", "--to", f"{dst.host}/inner",
                     "--from-ca-file", str(src.ca_file), "--to-ca-file", str(dst.ca_file),
                     env={"AIRGAP_REGISTRY_USERNAME": dst.username, "AIRGAP_REGISTRY_PASSWORD": dst.password},
                     check=False)
    assert swapped.returncode == 4 and src.host in swapped.stderr.strip().splitlines()[-1]
    both = airgap("sync", "--images", str(images_md), "--from", src.host, "--to", dst.host, "--from-password-stdin",
                  "--to-password-stdin", check=False, input="x\n")
    assert both.returncode == 2 and "only one of" in both.stderr


@pytest.mark.parametrize("typed, code", [("right", 0), ("wrong", 4)])
def test_username_alone_prompts_for_the_password_on_a_terminal(auth_registry, tmp_path, typed, code):
    import fcntl
    import os
    import pty
    import subprocess
    import sys
    import termios
    import time

    reg = auth_registry
    master, slave = pty.openpty()

    def controlling_tty() -> None:  # in the child: the pty becomes its terminal, as in a login shell
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRGAP_REGISTRY_")}
    env["HOME"] = str(tmp_path)  # no auth file to fall back on
    proc = subprocess.Popen([sys.executable, "-m", "airgap", "inventory", "--registry", reg.host, "--ca-file",
                             str(reg.ca_file), "--username", reg.username, "-o", str(tmp_path / "inv.json")],
                            stdin=slave, stdout=subprocess.PIPE, stderr=slave, env=env, preexec_fn=controlling_tty)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    while b"Password" not in seen and time.monotonic() < deadline:
        seen += os.read(master, 1024)
    assert f"Password for {reg.username} at {reg.host}".encode() in seen
    os.write(master, (reg.password if typed == "right" else "not-it").encode() + b"\n")
    proc.communicate(timeout=120)
    os.close(master)
    assert proc.returncode == code
    assert (tmp_path / "inv.json").exists() == (code == 0)


def test_preflight_checks_the_output_location_before_pulling(tmp_path, registry):
    import shutil
    import subprocess
    import sys

    layout = tmp_path / "src"
    add_image(layout, "big", layers=[LayerSpec(size=4 << 20, seed=31)])
    run_skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:big", f"docker://{registry.host}/library/big:1")
    images_md = write_images_md(tmp_path / "IMAGES.md", "0.1.0", [
        {"name": "big", "source": f"{registry.host}/library/big:1"}])
    store = tmp_path / "store"
    missing = airgap("bundle", "--images", str(images_md), "-o", str(tmp_path / "nope" / "b.tar"), "--no-chart",
                     "--store", str(store), check=False)
    assert missing.returncode == 2 and f"{tmp_path / 'nope'} does not exist" in missing.stderr
    assert not (store / "blobs").exists() or not any((store / "blobs").rglob("*"))  # nothing pulled

    # A file system too small for the bundle: a 2 MiB tmpfs in a private mount namespace.
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is needed for the private tmpfs")
    small = tmp_path / "small"
    small.mkdir()
    cmd = (f"mount -t tmpfs -o size=2m tmpfs {small} && exec {sys.executable} -m airgap bundle --images {images_md} "
           f"-o {small}/b.tar --no-chart --store {store}")
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", cmd], capture_output=True,
                          text=True, timeout=300)
    if "mount:" in proc.stderr or "unshare:" in proc.stderr:
        pytest.skip(f"cannot mount a private tmpfs here: {proc.stderr.strip()}")
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "free, the bundle needs at least" in last and str(small) in last
