"""The chart's offline runtime (templates/_offline.tpl, docs/offline.md): the model delivered from the
private registry (init container or image volume), the hubs offline, the generator pointed at an
in-cluster endpoint. Rendered by real Helm 3 and 4; objects validated against the Kubernetes schemas.
"""

from __future__ import annotations

import kubernetes_validate
import pytest
from test_chart import _values_file, helm, main_container, render_with, run_helm, template_args, workload  # noqa: F401

DIGEST = "sha256:" + "ab" * 32
LOADED = (f"model.image.registry=registry.example.com:5000/haystack", f"model.image.digest={DIGEST}",
          "model.image.tag=0.1.0")


def env_of(container) -> dict:
    return {e["name"]: e.get("value") for e in container.get("env") or []}


def validate(doc) -> None:
    kubernetes_validate.validate(doc, kubernetes_validate.utils.latest_version(), strict=True)


@pytest.mark.parametrize("component", ["query", "indexing"])
def test_default_init_container_fetches_the_model_by_digest(helm, component):
    docs = render_with(helm, sets=LOADED + ("global.imagePullSecrets[0]=regcred",))
    deploy = workload(docs, component)
    validate(deploy)
    spec = deploy["spec"]["template"]["spec"]
    fetch = next(c for c in spec["initContainers"] if c["name"] == "fetch-model")
    api = main_container(docs, component)
    assert fetch["image"] == api["image"]  # the API image carries the fetcher: no extra image to mirror
    assert fetch["command"] == ["python", "-m", "fetch_artifact"]
    assert fetch["args"][:2] == [f"registry.example.com:5000/haystack/models/all-minilm-l6-v2@{DIGEST}", "/models"]
    assert fetch["args"][2:] == ["--auth-file", "/var/run/airgap/registry/.dockerconfigjson"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["model"] and volumes["model-pull-secret"]["secret"]["secretName"] == "regcred"
    assert {"name": "model", "mountPath": "/models", "readOnly": True} in api["volumeMounts"]
    env = env_of(api)
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["HAYSTACK_TELEMETRY_ENABLED"] == "False"
    assert env["HAYSTACK_EMBEDDER_MODEL"] == "/models/all-MiniLM-L6-v2" and env["HAYSTACK_EMBEDDING_DIM"] == "384"
    assert env["USE_OPENAI_EMBEDDER"] == "false"
    assert "OPENAI_BASE_URL" not in env


def test_image_volume_delivery_mounts_the_artifact(helm):
    docs = render_with(helm, sets=LOADED + ("model.delivery=imageVolume",))
    deploy = workload(docs, "query")
    validate(deploy)
    spec = deploy["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["wait-for-opensearch"]
    (model,) = [v for v in spec["volumes"] if v["name"] == "model"]
    assert model["image"] == {"reference": f"registry.example.com:5000/haystack/models/all-minilm-l6-v2@{DIGEST}",
                              "pullPolicy": "IfNotPresent"}


def test_in_cluster_llm_endpoint(helm):
    docs = render_with(helm, sets=("llm.endpoint=http://vllm.llm.svc:8000/v1", "llm.model=qwen2.5-0.5b-instruct"))
    env = env_of(main_container(docs, "query"))
    assert env["OPENAI_BASE_URL"] == "http://vllm.llm.svc:8000/v1"
    assert env["HAYSTACK_LLM_MODEL"] == "qwen2.5-0.5b-instruct"


def test_model_and_offline_switches_off(helm):
    docs = render_with(helm, sets=("model.enabled=false", "offline.enabled=false"))
    deploy = workload(docs, "query")
    validate(deploy)
    env = env_of(main_container(docs, "query"))
    assert not {"HF_HUB_OFFLINE", "HAYSTACK_EMBEDDER_MODEL"} & set(env)
    assert not any(v["name"] == "model" for v in deploy["spec"]["template"]["spec"].get("volumes") or [])


@pytest.mark.parametrize("setting, words", [
    ("model.delivery=sideload", 'model.delivery "sideload": use initContainer'),
    ("llm.endpoint=vllm:8000", 'llm.endpoint "vllm:8000": give the OpenAI-compatible base URL'),
])
def test_unusable_offline_values_fail_at_render_time(helm, setting, words):
    # on values that work otherwise (the chart refuses missing secrets first)
    result = run_helm(helm, *template_args(_values_file("defaults"), sets=(setting,)))
    assert result.returncode != 0 and words in result.stderr, result.stderr
