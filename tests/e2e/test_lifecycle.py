"""Release after release into registries whose tags never move.

Three signed releases: 0.1.0; 0.2.0 with one image changed, bundled from a fresh content store (so
its signatures of the unchanged images are other bytes than 0.1.0's); 0.2.1 a delta against 0.2.0
from the same store (so it carries 0.2.0's signature bytes). Each is loaded, each rerun is a no-op,
then an older release and a changed chart under an unchanged version are refused with the target
untouched. Targets, all strict: a re-pushed tag is refused even with the same digest:
- Harbor (harbor_standin.py, an immutable project: 412) in front of a real Distribution registry;
- ECR IMMUTABLE (moto_server control plane, the data-plane proxy of test_target_ecr.py: 400 TAG_INVALID);
- Nexus ALLOW_ONCE (nginx playing Nexus, nexus_proxy.AllowOnce in front: 400 "does not allow updating").
"""

from __future__ import annotations

import json

import pytest

from harbor_standin import HarborStandIn
from helpers import airgap, load_json, write_images_md
from nexus_proxy import AllowOnce, start_nexus
from synth import LayerSpec, add_image
from ecr_standin import TOKEN_PASSWORD, FakeEcrDataPlane, ecr_env, moto_server  # noqa: F401

PW = {"COSIGN_PASSWORD": "lifecycle-pw"}
DAY = 86400
EPOCH = 1767225600  # 2026-01-01


def _chart(directory, version: str, note: str):
    (directory / "templates").mkdir(parents=True, exist_ok=True)
    (directory / "Chart.yaml").write_text(f"apiVersion: v2\nname: demo-app\nversion: {version}\n")
    (directory / "values.yaml").write_text("query:\n  image: {}\n")
    (directory / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\ndata:\n  note: " + note + "\n")
    return directory


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("releases")
    airgap("keygen", "--output-key-prefix", str(tmp / "k"), env=PW)
    layout = tmp / "src"
    base = LayerSpec(size=1 << 20, seed=100)
    add_image(layout, "query", layers=[base, LayerSpec(size=1 << 20, seed=101)])
    add_image(layout, "query2", layers=[base, LayerSpec(size=1 << 20, seed=201)])  # 0.2.0's changed image
    add_image(layout, "indexing", layers=[base, LayerSpec(size=512 << 10, seed=102)])
    add_image(layout, "opensearch", layers=[LayerSpec(size=1 << 20, seed=103)], platforms=["linux/amd64", "linux/arm64"])

    def make(release: str, query_ref: str, chart_version: str, note: str, day: int, store: str, *extra: str):
        md = write_images_md(tmp / f"IMAGES-{release}.md", release, [
            {"name": "haystack-query", "source": f"oci:{layout}:{query_ref}", "values": "query.image"},
            {"name": "haystack-indexing", "source": f"oci:{layout}:indexing", "values": "indexing.image"},
            {"name": "opensearch", "source": f"oci:{layout}:opensearch", "values": "opensearch.image", "tag": "2.18.0"},
        ])
        chart = _chart(tmp / f"chart-{release}", chart_version, note)
        out = tmp / f"bundle-{release}.tar"
        airgap("bundle", "--images", str(md), "-o", str(out), "--chart", str(chart), "--store", str(tmp / store),
               "--no-crds", "--key", str(tmp / "k.key"), *extra, env={**PW, "SOURCE_DATE_EPOCH": str(EPOCH + day * DAY)})
        return out

    b = {"0.1.0": make("0.1.0", "query", "0.1.0", "one", 0, "s1/store"),
         "0.2.0": make("0.2.0", "query2", "0.2.0", "two", 1, "s2/store")}
    b["0.2.1"] = make("0.2.1", "query2", "0.2.0", "two", 2, "s2/store", "--base", str(b["0.2.0"]))
    # same chart version 0.2.0, other content: must be refused before any push
    b["0.2.2-changed-chart"] = make("0.2.2", "query2", "0.2.0", "changed", 3, "s2/store")
    return tmp, b


def _inspect(path) -> dict:
    return json.loads(airgap("inspect", str(path), "--json").stdout)


def test_bundles_of_the_same_image_carry_the_same_signature_and_chart_bytes(releases):
    _, b = releases
    m020, m021 = _inspect(b["0.2.0"]), _inspect(b["0.2.1"])
    sigs = lambda m: {i["name"]: [s["digest"] for s in i["signatures"]] for i in m["images"]}  # noqa: E731
    assert sigs(m020) == sigs(m021)  # kept by digest and key in the store
    chart = lambda m: next(f["sha256"] for f in m["files"] if f["kind"] == "chart")  # noqa: E731
    assert chart(m020) == chart(m021)  # repackaged a day later: same bytes
    assert chart(_inspect(b["0.2.2-changed-chart"])) != chart(m020)


def _snapshot(backend) -> dict[str, dict[str, str]]:
    return {r: {t: backend.manifest_digest(r, t) for t in backend.tags(r)} for r in backend.catalog()}


def _lifecycle(tmp, b, registry: str, backend, env: dict, tmp_path, *extra: str) -> None:
    args = ["--registry", registry, "--insecure-registry", *extra, "--key", str(tmp / "k.pub"),
            "--values-out", str(tmp_path / "values.yaml")]
    for release in ("0.1.0", "0.2.0", "0.2.1"):
        proc = airgap("load", str(b[release]), *args, "--json", env=env)
        first = json.loads(proc.stdout)
        if release == "0.2.0":
            # unchanged images: signed already on the target by this key, so their signatures stay
            assert "signed already by this key" in proc.stderr
            assert sum(1 for i in first["images"] if i["status"] == "copied") >= 1
        before = _snapshot(backend)
        again = load_json("load", str(b[release]), *args, env=env)
        assert again["manifests_pushed"] == 0, release
        assert all(i["status"] == "present" for i in again["images"] + again["signatures"]), release
        assert _snapshot(backend) == before, release
    records = [t for r, tags in _snapshot(backend).items() if r.endswith("airgap-releases") for t in tags]
    assert len(records) == 3  # one record tag per release: it advances where tags cannot move

    before = _snapshot(backend)
    old = airgap("load", str(b["0.1.0"]), *args, env=env, check=False)
    assert old.returncode == 3, old.stderr
    last = old.stderr.strip().splitlines()[-1]
    assert "release 0.1.0" in last and "older than release 0.2.1" in last and "Traceback" not in old.stderr
    changed = airgap("load", str(b["0.2.2-changed-chart"]), *args, env=env, check=False)
    assert changed.returncode == 2, changed.stderr
    last = changed.stderr.strip().splitlines()[-1]
    assert "demo-app version 0.2.0" in last and "Nothing was pushed" in last
    assert _snapshot(backend) == before


@pytest.fixture
def harbor(harbor_factory):
    standin, backend = harbor_factory({"admin": "Harbor12345-test"})
    standin.projects.add("rel")
    standin.immutable.add("rel")
    return standin, backend

def test_three_releases_into_an_immutable_harbor_project(releases, harbor, tmp_path):
    tmp, b = releases
    standin, backend = harbor
    env = {"AIRGAP_REGISTRY_USERNAME": "admin", "AIRGAP_REGISTRY_PASSWORD": "Harbor12345-test"}
    _lifecycle(tmp, b, f"{standin.host}/rel", _TokenView(standin, backend), env, tmp_path)


class _TokenView:
    """Reads the token-protected backend registry of the Harbor stand-in with a core token."""

    def __init__(self, standin: HarborStandIn, backend):
        self.standin, self.backend = standin, backend

    def _get(self, path: str, scope: list[dict], head: bool = False):
        import httpx
        token = self.standin.signer.token("core", scope)
        from harbor_standin import MANIFEST_ACCEPT
        fn = httpx.head if head else httpx.get
        return fn(f"http://{self.backend.host}{path}", headers={"Authorization": f"Bearer {token}",
                                                                 "Accept": MANIFEST_ACCEPT})

    def catalog(self) -> list[str]:
        r = self._get("/v2/_catalog?n=1000", [{"type": "registry", "name": "catalog", "actions": ["*"]}])
        return list(r.json().get("repositories") or [])

    def tags(self, repo: str) -> list[str]:
        r = self._get(f"/v2/{repo}/tags/list", [{"type": "repository", "name": repo, "actions": ["pull"]}])
        return list(r.json().get("tags") or []) if r.status_code == 200 else []

    def manifest_digest(self, repo: str, ref: str) -> str | None:
        r = self._get(f"/v2/{repo}/manifests/{ref}", [{"type": "repository", "name": repo, "actions": ["pull"]}],
                      head=True)
        return r.headers.get("docker-content-digest") if r.status_code == 200 else None


@pytest.fixture
def ecr(moto_server, registry_factory):  # noqa: F811
    plane = FakeEcrDataPlane(moto_server, registry_factory(credentials=("AWS", TOKEN_PASSWORD)))
    try:
        yield plane
    finally:
        plane.stop()


def test_three_releases_into_ecr_immutable_repositories(releases, ecr, tmp_path):
    tmp, b = releases
    for name in ("haystack-query", "haystack-indexing", "opensearch", "charts/demo-app", "airgap-releases"):
        ecr.ecr.create_repository(repositoryName=f"rel/{name}", imageTagMutability="IMMUTABLE")
    _lifecycle(tmp, b, f"{ecr.data.host}/rel", ecr.registry, ecr_env(ecr), tmp_path, "--target", "ecr")


def test_three_releases_into_nexus_allow_once(releases, registry_factory, tmp_path_factory, tmp_path):
    tmp, b = releases
    backend = registry_factory()
    allow = AllowOnce(backend)
    nx = start_nexus(tmp_path_factory.mktemp("nexus"), allow.host)
    try:
        env = {"AIRGAP_REGISTRY_USERNAME": nx.username, "AIRGAP_REGISTRY_PASSWORD": nx.password}
        _lifecycle(tmp, b, f"{nx.host}/{nx.hosted}/rel", backend, env, tmp_path)
        assert allow.refused == []  # never asked to redeploy a tag
    finally:
        nx.stop()
        allow.stop()
