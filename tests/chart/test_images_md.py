"""The repository's own IMAGES.md is the contract with the chart: every image it lists is used by the
chart, and every image the chart runs is listed (the Traefik entry excepted: it is for clusters that
do not run Traefik already, and the chart never renders it).

The chart is rendered by real Helm with every IMAGES.md ``values:`` path pointed at a marker
repository; an image that still shows its default then has no IMAGES.md entry behind it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from airgap.errors import InputError

from airgap import imagesfile
from airgap.build.plan import plan_builds
from airgap.build.source import resolve_source

REPO = Path(__file__).resolve().parents[2]
HELM = REPO / ".tools/bin/helm3"
MARK = "images-md.invalid"
# Where the chart reads its images (values.yaml); IMAGES.md must name exactly these.
CHART_IMAGE_PATHS = {"query.image", "indexing.image", "frontend.image", "opensearch.image",
                     "opensearch.exporter.image", "init.image", "model.image"}
# The secrets the chart refuses to render without (it fails on values that cannot work).
CHART_SECRETS = {"secrets": {"opensearchPassword": "Images-md-Pw-1!", "openaiApiKey": "sk-images-md"}}


def _helm() -> str:
    helm = str(HELM) if HELM.exists() else shutil.which("helm")
    if helm is None:
        pytest.fail("helm missing: run `make test` (scripts/install-helm.sh)", pytrace=False)
    return helm


def _pod_images(docs: list[dict]) -> set[str]:
    images = set()
    for doc in docs:
        spec = (doc.get("spec") or {})
        pod = (spec.get("template") or {}).get("spec") or spec.get("jobTemplate", {}).get("spec", {}).get(
            "template", {}).get("spec") or {}
        for key in ("initContainers", "containers"):
            images |= {c["image"] for c in pod.get(key) or []}
        images |= {v["image"]["reference"] for v in pod.get("volumes") or [] if "image" in v}  # the model
    return images


def test_repository_images_md_and_the_chart_agree(tmp_path):
    spec = imagesfile.load(REPO / "IMAGES.md")
    keyed = {e.values: e.name for e in spec.images if e.values}
    assert set(keyed) == CHART_IMAGE_PATHS
    assert [e.name for e in spec.images if not e.values] == ["traefik"]

    values: dict = dict(CHART_SECRETS)
    for path, name in keyed.items():
        node = values
        for part in path.split("."):
            node = node.setdefault(part, {})
        node.update({"registry": MARK, "repository": name, "tag": "t", "digest": ""})
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    # the model as an image volume: the init-container delivery names it in args, not as an image
    out = subprocess.run([_helm(), "template", "rag", str(REPO / spec.chart), "-f", str(values_file),
                          "--set", "model.delivery=imageVolume"],
                         capture_output=True, text=True, check=True).stdout
    rendered = _pod_images([d for d in yaml.safe_load_all(out) if d])
    # every image the chart runs comes from an IMAGES.md entry ...
    assert {i for i in rendered if not i.startswith(f"{MARK}/")} == set()
    # ... and every IMAGES.md entry with a values key is run by the chart
    assert rendered == {f"{MARK}/{name}:t" for name in keyed.values()}


def test_build_entries_match_the_upstream_layout_of_the_demo_sources(tmp_path):
    """The demo tree mirrors haystack-rag-app's layout, so IMAGES.md's build: entries apply to it unchanged."""
    spec = imagesfile.load(REPO / "IMAGES.md")
    tree = resolve_source(str(REPO / "demo/haystack-rag-app"), REPO, tmp_path)
    targets = plan_builds(spec, tree)
    assert {t.name for t in targets} == {"haystack-query", "haystack-indexing", "haystack-frontend"}
    for t in targets:
        assert t.dockerfile.is_file() and t.context.is_dir()
        if t.base is None:  # the upstream Dockerfiles (the overlays are this repository's layer)
            assert "RUN " in t.dockerfile.read_text()
    # the API images get the observability layer on top of their upstream build; the frontend its API URL
    overlays = {t.name: t for t in targets if t.base}
    assert set(overlays) == {"haystack-query", "haystack-indexing"}
    assert all(t.dockerfile == REPO / "manifests/images/haystack-observability/Dockerfile" for t in overlays.values())
    assert {t.name: t.args.get("APP") for t in overlays.values()} == {"haystack-query": "query.main:app",
                                                                     "haystack-indexing": "indexing.main:app"}
    frontend = next(t for t in targets if t.name == "haystack-frontend")
    assert frontend.args["REACT_APP_HAYSTACK_API_URL"] == "/api"


@pytest.mark.parametrize("build, line, message", [
    ("{context: app, dockerFile: app/Dockerfile}", 7, "image a: unknown key 'dockerFile' in build:"),
    ("{context: app, args: [A=1]}", 7, "image a: build: args: must map names to values"),
    ("{dockerfile: app/Dockerfile}", 6, "image a: build: needs context:"),
])
def test_build_entry_errors_name_the_line(tmp_path, build, line, message):
    path = tmp_path / "IMAGES.md"
    path.write_text(f"# x\n\n```yaml airgap\nrelease: 1.0.0\nimages:\n  - name: a\n    build: {build}\n```\n")
    with pytest.raises(InputError) as err:
        imagesfile.load(path)
    assert str(err.value).startswith(f"{path}:{line}: {message}")


def test_values_written_by_load_relocate_every_chart_image(tmp_path, registry):
    """The whole contract, end to end: the repository's image set (stand-in content) and the real chart
    bundled, loaded into a real registry, and the chart rendered with nothing but the values file
    `airgap load` wrote: every image the chart runs comes from that registry, pinned by the digest the
    registry holds."""
    from synth import LayerSpec, add_image
    from helpers import airgap, run_load, write_images_md

    spec = imagesfile.load(REPO / "IMAGES.md")
    layout = tmp_path / "src"
    entries = []
    for n, e in enumerate(spec.images):
        add_image(layout, e.name, layers=[LayerSpec(size=64 << 10, seed=500 + n)])
        entry = {"name": e.name, "source": f"oci:{layout}:{e.name}"}
        if e.values:
            entry["values"] = e.values
        entries.append(entry)
    md = write_images_md(tmp_path / "IMAGES.md", spec.release, entries,
                         extra=f"chart: {REPO / spec.chart}")
    bundle = tmp_path / "b.tar"
    airgap("bundle", "--images", str(md), "-o", str(bundle), "--store", str(tmp_path / "store"))
    values = tmp_path / "values-airgap.yaml"
    run_load(bundle, registry, "haystack", "--values-out", str(values), "--no-chart-push")
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(yaml.safe_dump(CHART_SECRETS))
    out = subprocess.run([_helm(), "template", "rag", str(REPO / spec.chart), "-f", str(values), "-f", str(secrets),
                          "--set", "model.delivery=imageVolume"],
                         capture_output=True, text=True, check=True).stdout
    rendered = _pod_images([d for d in yaml.safe_load_all(out) if d])
    assert len(rendered) == len(CHART_IMAGE_PATHS)
    for image in rendered:
        name, _, digest = image.partition("@")
        assert name.startswith(f"{registry.host}/haystack/") and digest.startswith("sha256:"), image
        repo = name.split("/", 1)[1]
        assert registry.manifest_digest(repo, digest) == digest
