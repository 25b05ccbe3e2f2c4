"""The real haystack-rag application (../shared/data/upstream/haystack-rag-app at 70c49c0), run the way
the images and the chart run it, with no network at all (`make test-app`; needs the heavy stack in
.venv-app, which scripts/install-app-deps.sh installs).

* The embedding model travels as the IMAGES.md artifact: packed, signed, bundled, loaded into a real
  Distribution and fetched back by digest with the chart's init-container fetcher.
* Both upstream services run under the observability layer (`python -m haystack_observability`) inside
  `unshare -n`, with the OpenSearch and OpenAI-compatible stand-ins on the namespace's own loopback
  (tests/app/standins.py says how strict they are) and a real Prometheus scraping /metrics.
* The frontend is built with IMAGES.md's build argument and its bundle checked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, airgap, load_json, write_images_md

from airgap import imagesfile

UPSTREAM = REPO.parent / "shared/data/upstream/haystack-rag-app"
LAYER = REPO / "manifests/images/haystack-observability"
APP_VENV = Path(os.environ.get("AIRGAP_APP_VENV", REPO / ".venv-app"))
PASSWORD = "app-test-key-password"

pytestmark = pytest.mark.skipif(not UPSTREAM.is_dir(), reason=f"{UPSTREAM} is absent: no upstream application")


@pytest.fixture(scope="module")
def app_python() -> str:
    py = APP_VENV / "bin/python"
    if not py.exists():
        pytest.fail(f"{py} missing: run `make test-app` (scripts/install-app-deps.sh)", pytrace=False)
    return str(py)


@pytest.fixture(scope="module")
def model_from_registry(tmp_path_factory, registry_session, app_python) -> Path:
    """The repository's model artifact entry -> store -> signed bundle -> load -> fetched by digest."""
    tmp = tmp_path_factory.mktemp("model")
    entry = next(e for e in imagesfile.load(REPO / "IMAGES.md").images if e.artifact)
    spec = entry.artifact
    subprocess.run(["bash", str(REPO / "scripts/fetch-model.sh")], check=True, env={**os.environ, "PY": sys.executable})
    annotations = "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in spec.annotations.items()) + "}"
    images = write_images_md(tmp / "IMAGES.md", "0.1.0", [
        {"name": entry.name, "values": entry.values,
         "artifact": f"\n        path: {REPO / spec.path}\n        type: {spec.artifact_type}\n        root: {spec.root}"
                     f"\n        annotations: {annotations}"}])
    env = {"COSIGN_PASSWORD": PASSWORD}
    airgap("keygen", "--output-key-prefix", str(tmp / "cosign"), env=env)
    airgap("bundle", "--images", str(images), "-o", str(tmp / "b.tar"), "--no-chart", "--store", str(tmp / "store"),
           "--key", str(tmp / "cosign.key"), env=env)
    reg = registry_session
    res = load_json("load", str(tmp / "b.tar"), "--registry", f"{reg.host}/haystack", "--insecure-registry",
                    "--key", str(tmp / "cosign.pub"), "--values-out", str(tmp / "values.yaml"))
    assert res["verified_by"]
    import yaml
    image = yaml.safe_load((tmp / "values.yaml").read_text())["model"]["image"]
    ref = f"{image['registry']}/{image['repository']}@{image['digest']}"
    dest = tmp / "models"
    # What the chart's fetch-model init container runs (in the API image's Python).
    subprocess.run([app_python, str(LAYER / "fetch_artifact.py"), ref, str(dest), "--plain-http"], check=True,
                   capture_output=True, text=True)
    return dest / spec.root


@pytest.fixture(scope="module")
def registry_session(tmp_path_factory):
    from registry_server import running_registry
    with running_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="module")
def report(tmp_path_factory, app_python, model_from_registry) -> dict:
    work = tmp_path_factory.mktemp("scenario")
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("prometheus missing: apt-get install prometheus (scripts/install-app-deps.sh)", pytrace=False)
    cfg = {"work": str(work), "upstream": str(UPSTREAM), "layer": str(LAYER), "model": str(model_from_registry),
           "app_python": app_python, "prometheus": prometheus,
           "document": "The lighthouse of Pharos-Kelvar was built in 1847 by the engineer Mirela Oster.\n"
                       "It stands on a granite cliff above the northern harbour.\n",
           "question": "Who built the lighthouse of Pharos-Kelvar?"}
    (work / "cfg.json").write_text(json.dumps(cfg))
    proc = subprocess.run(["unshare", "-n", sys.executable, str(Path(__file__).with_name("scenario.py")),
                           str(work / "cfg.json"), str(work / "report.json")], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((work / "report.json").read_text())


def test_query_path_answers_from_the_indexed_document_with_no_network(report):
    assert report["upload"] == {"status": 200, "body": [{"file_id": "facts.txt", "status": "success", "error": None}]}
    assert report["search"]["status"] == 200, report["search"]
    result = report["search"]["body"]["results"][0]
    assert "Mirela Oster" in result["answers"][0]["answer"]       # the retrieved text reached the LLM and back
    assert result["documents"][0]["meta"]["file_name"] == "facts.txt"
    # the real embedding model, from the local path, at its own dimension (the index was made for 384)
    assert report["opensearch_dimension"] == {"default": 384} and report["opensearch_docs"] == {"default": 1}
    assert result["documents"][0]["score"] > 0.5                  # knn hit: query and document embeddings agree
    (call,) = report["llm_requests"]
    assert call["model"] == "qwen2.5-0.5b-instruct"               # the in-cluster server's model, not gpt-4o
    assert call["authorization"] == "Bearer in-cluster-endpoint-needs-no-key"  # no API key was configured
    # nothing was downloaded into the (empty) model-hub cache
    assert report["hf_home_files"] == []


def test_services_tried_no_host_but_loopback(report):
    for service, lines in report["connects"].items():
        assert lines, f"{service}: the audit hook saw no connection at all (it must see OpenSearch)"
        for line in lines:
            assert re.match(r"^(resolve )?127\.0\.0\.1( \d+)?$", line), f"{service} tried {line!r}"


def test_prometheus_scrapes_both_services(report):
    prom = report["prometheus"]
    assert sorted((t["job"], t["health"]) for t in prom["targets"]) == [("haystack-indexing", "up"),
                                                                        ("haystack-query", "up")], prom["targets"]
    assert {(r["metric"]["job"], r["value"][1]) for r in prom["up"]} == {("haystack-indexing", "1"),
                                                                        ("haystack-query", "1")}
    (search,) = prom["search_requests"]
    assert search["metric"]["status"] == "200" and search["value"][1] == "1"
    (upload,) = prom["upload_requests"]
    assert upload["metric"]["method"] == "POST" and upload["value"][1] == "1"


def test_logs_are_json_and_secrets_came_from_files(report):
    for service, lines in report["logs"].items():
        records = [json.loads(line) for line in lines if line.strip()]  # every line is one JSON object
        assert all(r["service"] == service for r in records)
        assert any(r["message"] == "secrets read from files" and "OPENSEARCH_PASSWORD" in r["variables"]
                   for r in records), service
        assert not any("S3cure-Passw0rd" in line for line in lines)
    access = [json.loads(x) for x in report["logs"]["query"] if '"http_route"' in x]
    assert {(a["http_route"], a["http_status"]) for a in access} >= {("/search", 200), ("<unmatched>", 404)}


def test_frontend_build_uses_the_api_path_from_images_md(tmp_path):
    """`npm ci && npm run build` with the build argument IMAGES.md passes, as Dockerfile.frontend runs it."""
    if shutil.which("npm") is None:
        pytest.fail("npm missing: apt-get install npm", pytrace=False)
    entry = next(e for e in imagesfile.load(REPO / "IMAGES.md").images if e.name == "haystack-frontend")
    args = entry.build.args
    assert args == {"REACT_APP_HAYSTACK_API_URL": "/api"}
    src = tmp_path / "frontend"
    shutil.copytree(UPSTREAM / "frontend", src)
    for p in [src, *src.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)  # ../shared is read-only in CI
    env = {**os.environ, **args, "CI": "false", "GENERATE_SOURCEMAP": "false"}
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=src, env=env, check=True,
                   capture_output=True, timeout=900)
    subprocess.run(["npm", "run", "build"], cwd=src, env=env, check=True, capture_output=True, timeout=900)
    bundles = list((src / "build/static/js").glob("main.*.js"))
    assert len(bundles) == 1
    js = bundles[0].read_text()
    assert '"/api"' in js and "localhost:8000" not in js   # the UI calls /api on its own origin
