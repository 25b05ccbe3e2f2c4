"""Auth-file keys per namespace, end to end: a real Distribution with two htpasswd users, and the
registry's own request log telling which user each repository's requests came as.

htpasswd lets every user at every repository, so the load succeeds whichever identity it sends;
what the test checks is the identity, read from Distribution's debug log (2.8 names the user,
``auth.user.name``, only on the lines an authorized request logs while it is served).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import airgap, run_load, write_images_md
from registry_server import RegistryError, RegistryProcess, require_tools, start_registry
from synth import LayerSpec, add_image

_USER = re.compile(r'auth\.user\.name=("[^"]*"|\S+)')
_URI = re.compile(r'http\.request\.uri=("[^"]*"|\S+)')
_ID = re.compile(r'http\.request\.id=(\S+)')


@pytest.fixture
def two_user_registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    """Plain-HTTP loopback Distribution, htpasswd users alice and bob, debug log (who asked what)."""
    try:
        require_tools("docker-registry", "htpasswd")
        rp = start_registry(tmp_path / "registry", users={"alice": "alice-pw", "bob": "bob-pw"},
                            log_level="debug")
    except RegistryError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield rp
    finally:
        rp.stop()


def _requests_by_user(rp: RegistryProcess) -> list[tuple[str, str]]:
    """(user, request URI) for every authorized request airgap made (not the test's own reads)."""
    seen: dict[str, tuple[str, str]] = {}
    for line in rp.log_path.read_text(errors="replace").splitlines():
        user, uri, rid = _USER.search(line), _URI.search(line), _ID.search(line)
        if user and uri and rid and "http.request.useragent=airgap/" in line:
            seen[rid.group(1)] = (user.group(1).strip('"'), uri.group(1).strip('"'))
    return list(seen.values())


def _bundle(tmp_path: Path) -> Path:
    """Two images sharing a base layer, named into two namespaces (loaded with --naming flat)."""
    layout = tmp_path / "src"
    base = LayerSpec(size=256 << 10, seed=500)
    add_image(layout, "query", layers=[base, LayerSpec(size=64 << 10, seed=501)])
    add_image(layout, "indexing", layers=[base, LayerSpec(size=64 << 10, seed=502)])
    md = write_images_md(tmp_path / "IMAGES.md", "1.0.0", [
        {"name": "team-a/query", "source": f"oci:{layout}:query"},
        {"name": "other/indexing", "source": f"oci:{layout}:indexing"},
    ])
    out = tmp_path / "bundle.tar"
    airgap("bundle", "--images", str(md), "-o", str(out), "--no-chart", "--store", str(tmp_path / "store"))
    return out


def test_each_namespace_is_pushed_with_its_own_auth_file_key(tmp_path, two_user_registry):
    rp = two_user_registry
    host = rp.registry.host
    auth_file = tmp_path / "auth.json"

    def entry(user: str) -> dict:
        return {"auth": base64.b64encode(f"{user}:{user}-pw".encode()).decode()}

    auth_file.write_text(json.dumps({"auths": {f"{host}/team-a": entry("alice"), host: entry("bob")}}))
    (tmp_path / "docker").mkdir()
    env = {"REGISTRY_AUTH_FILE": str(auth_file), "DOCKER_CONFIG": str(tmp_path / "docker"),
           "HOME": str(tmp_path)}
    # cwd: a load writes values-airgap.yaml into the current directory
    run_load(_bundle(tmp_path), rp.registry, "", "--naming", "flat", env=env, cwd=tmp_path)

    seen = _requests_by_user(rp)
    assert rp.registry.tags("team-a/query") and rp.registry.tags("other/indexing")
    team_a = {user for user, uri in seen if "team-a" in uri}
    other = {user for user, uri in seen if "/v2/other/" in uri}
    assert any("/manifests/" in uri for _, uri in seen if "/v2/other/" in uri)  # the log holds the pushes
    # bob's requests never name alice's repository, not even as a mount's from=; and the reverse
    assert team_a == {"alice"}, [s for s in seen if "team-a" in s[1] and s[0] != "alice"]
    assert other == {"bob"}, [s for s in seen if "/v2/other/" in s[1] and s[0] != "bob"]
