"""The haystack-rag Helm chart (manifests/haystack-rag), rendered by real Helm 3 and Helm 4.

Every rendered object is validated against the Kubernetes schemas (kubernetes-validate) and every
custom resource against the upstream CRDs in ../shared/data/crds.  The assertions are about what a
user of the chart sees: which image each container pulls, where the secrets come from, how traffic
is routed, what Prometheus scrapes and alerts on.

Helm comes from `bash scripts/install-helm.sh` (.tools/bin/helm3, .tools/bin/helm4).
Each (helm, scenario) is rendered once per session and shared by the tests.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import importlib.util
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from airgap.fsutil import atomic_write

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "manifests/haystack-rag"
EXAMPLES = CHART / "examples"
CRD_LOCK = REPO / "manifests/crds/traefik-crds.lock.yaml"
SHARED_CRDS = Path(__file__).resolve().parents[3] / "shared/data/crds"
TOOLS = REPO / ".tools/bin"
HELMS = ["helm3", "helm4"]
RELEASE, NAMESPACE = "rag", "haystack"
FULL = f"{RELEASE}-haystack-rag"
# kubeVersion floor of the chart, and the newest schemas kubernetes-validate carries
KUBE_VERSIONS = ["1.29.0", kubernetes_validate.utils.latest_version()]

# --------------------------------------------------------------------------- scenarios

# Secret values that must only ever appear inside the chart-managed Secret.
SENTINELS = {
    "opensearchPassword": "Sentinel-Pw-5e2a!x",
    "openaiApiKey": "sk-sentinel-key-77d3",
}
# What every install must set (the chart refuses to render without it, see test_chart_checks.py).
WORKING = {"secrets": {"opensearchPassword": "Working-Pw-1b9c!", "openaiApiKey": "sk-working-0000"}}
FULL_MONITORING = {
    "monitoring": {
        "enabled": True,
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "dashboards": {"enabled": True},
    }
}
PRIVATE = "127.0.0.1:5000"
# The six images of the air-gap set: values path -> repository in the private registry and tag.
CONTRACT_IMAGES = {
    "query.image": ("haystack/haystack-query", "0.1.0"),
    "indexing.image": ("haystack/haystack-indexing", "0.1.0"),
    "frontend.image": ("haystack/haystack-frontend", "0.1.0"),
    "opensearch.image": ("haystack/opensearch", "2.18.0"),
    "opensearch.exporter.image": ("haystack/opensearch-exporter", "v1.8.0"),
    "init.image": ("haystack/busybox", "1.36.1"),
}


def digest_for(path: str) -> str:
    """A distinct digest per image, so a test can tell which values path a container used."""
    return "sha256:" + hashlib.sha256(path.encode()).hexdigest()


def airgap_values() -> dict:
    """The values file `airgap load` writes (the contract with the tool)."""
    values: dict = {"image": {"registry": PRIVATE, "tag": "0.1.0"}}
    for path, (repository, tag) in CONTRACT_IMAGES.items():
        node = values
        for part in path.split("."):
            node = node.setdefault(part, {})
        node.update({"registry": PRIVATE, "repository": repository, "tag": tag, "digest": digest_for(path)})
    return values


def merge(*dicts: dict) -> dict:
    out: dict = {}
    for d in dicts:
        for key, value in d.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


SCENARIOS: dict[str, dict] = {
    "defaults": WORKING,
    "kubernetes": merge({"secrets": {"provider": "kubernetes", **SENTINELS}}, FULL_MONITORING),
    "existing-secret": {"secrets": {"provider": "kubernetes", "existingSecret": "corp-haystack-creds"}},
    "generated-password": {"secrets": {"openaiApiKey": "sk-x", "generateOpensearchPassword": True}},
    "external-secrets": merge(
        {"secrets": {"provider": "externalSecrets", **SENTINELS,
                     "externalSecrets": {"secretStoreRef": {"name": "corp-vault-store", "kind": "SecretStore"}}}},
        FULL_MONITORING),
    "vault": merge({"secrets": {"provider": "vault", **SENTINELS}}, FULL_MONITORING),
    "sops": merge({"secrets": {"provider": "sops", **SENTINELS}}, FULL_MONITORING),
    "monitoring-off": {"secrets": SENTINELS, "monitoring": {"enabled": False}},
    # the switches the other scenarios leave at their defaults
    "options": {"secrets": {"provider": "vault", "vault": {"kvVersion": 1}},
                "indexing": {"persistence": {"enabled": True, "storageClassName": "fast"}},
                "opensearch": {"sysctlInit": {"enabled": True}, "fixPermissionsInit": {"enabled": True},
                               "persistence": {"size": "50Gi"}},
                "ingress": {"enabled": False},
                "serviceAccount": {"create": False, "name": "corp-sa"}},
    "airgap": merge(WORKING, airgap_values(), FULL_MONITORING),
    "airgap-global-registry": merge(WORKING, airgap_values(), {"global": {"imageRegistry": "harbor.corp.example:8443",
                                                                  "imagePullSecrets": ["harbor-pull", {"name": "backup-pull"}]}}),
}
PROVIDER_SCENARIOS = ["kubernetes", "external-secrets", "vault", "sops", "existing-secret"]


# --------------------------------------------------------------------------- helm

def helm_path(name: str) -> Path:
    path = TOOLS / name
    if not path.exists():
        pytest.skip(f"{path} is missing: run `bash scripts/install-helm.sh` to install Helm 3 and 4")
    return path


@pytest.fixture(scope="session", params=HELMS)
def helm(request) -> Path:
    return helm_path(request.param)


@functools.cache
def _values_file(scenario: str) -> Path:
    directory = REPO / ".tools/test-values"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{scenario}.yaml"
    # Atomic: under `pytest -n` another worker may be reading the same file in a helm run right now.
    atomic_write(path, yaml.safe_dump(SCENARIOS[scenario], sort_keys=False).encode())
    return path


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120)


def template_args(*values_files: Path, sets: tuple[str, ...] = ()) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for f in values_files:
        args += ["--values", str(f)]
    for s in sets:
        args += ["--set", s]
    return args


@functools.cache
def _render(helm: Path, scenario: str) -> tuple[list[dict], str]:
    result = run_helm(helm, *template_args(_values_file(scenario)))
    assert result.returncode == 0, f"helm template ({scenario}) failed:\n{result.stderr}"
    return [d for d in yaml.safe_load_all(result.stdout) if d], result.stdout


def render(helm: Path, scenario: str) -> list[dict]:
    return _render(helm, scenario)[0]


def render_with(helm: Path, *files: Path, sets: tuple[str, ...] = ()) -> list[dict]:
    """Render with WORKING under the given files and --set values."""
    result = run_helm(helm, *template_args(_values_file("defaults"), *files, sets=sets))
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


# --------------------------------------------------------------------------- object helpers

def of_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


def pod_templates(docs):
    """(workload, pod template) for every workload."""
    return [(d, d["spec"]["template"]) for d in docs if d["kind"] in WORKLOADS]


def containers(pod_template, *, init=True):
    spec = pod_template["spec"]
    return list(spec.get("initContainers") or []) * init + list(spec["containers"])


def all_images(docs):
    return [(w["metadata"]["name"], c["name"], c["image"]) for w, t in pod_templates(docs) for c in containers(t)]


def workload(docs, component):
    found = [d for d in docs if d["kind"] in WORKLOADS
             and d["metadata"]["labels"].get("app.kubernetes.io/component") == component]
    assert len(found) == 1, f"expected one workload for {component}, found {len(found)}"
    return found[0]


def main_container(docs, component):
    return workload(docs, component)["spec"]["template"]["spec"]["containers"][0]


def is_custom(doc) -> bool:
    """A custom resource: its API group has a dot and is not one of Kubernetes' own (*.k8s.io)."""
    group = doc["apiVersion"].rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


def env_map(container):
    return {e["name"]: e for e in container.get("env", [])}


# --------------------------------------------------------------------------- lint and schemas

@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_helm_lint_strict(helm, scenario):
    result = run_helm(helm, "lint", "--strict", str(CHART), "--namespace", NAMESPACE, "--values", str(_values_file(scenario)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_core_objects_match_kubernetes_schemas(helm, scenario):
    docs = render(helm, scenario)
    core = 0
    for doc in docs:
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.utils.SchemaNotFoundError:
                assert is_custom(doc), f"{doc['kind']} {doc['apiVersion']} has no Kubernetes schema"
                break
            except kubernetes_validate.utils.ValidationError as exc:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} invalid for Kubernetes {version}: "
                            f"{'.'.join(map(str, exc.path))}: {exc.message}")
        else:
            core += 1
    assert core >= 10  # Deployments, StatefulSet, Services, ConfigMap, ... were really checked


# ---- custom resources against the real CRDs

def _strict(schema):
    """A CRD's structural schema, made to reject fields the API server would silently prune."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    validators = {}
    for path in sorted(SHARED_CRDS.glob("*.y*ml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if not version.get("served", True):
                    continue
                schema = _strict(version["schema"]["openAPIV3Schema"])
                validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return validators


@pytest.fixture(scope="session")
def crds():
    if not SHARED_CRDS.is_dir():
        pytest.skip(f"{SHARED_CRDS} is absent: the upstream CRDs are needed to validate custom resources")
    return crd_validators()


def assert_valid_custom_resource(crds, doc):
    key = (doc["apiVersion"], doc["kind"])
    assert key in crds, f"no served CRD for {key}: the cluster would reject this object"
    errors = sorted(crds[key].iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, f"{doc['kind']}/{doc['metadata']['name']}: " + "; ".join(
        f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_custom_resources_match_upstream_crds(helm, crds, scenario):
    docs = render(helm, scenario)
    custom = [d for d in docs if is_custom(d)]
    expected = {"IngressRoute", "Middleware", "ServersTransport"}
    if SCENARIOS[scenario].get("ingress", {}).get("enabled") is False:
        expected = set()
    if "monitoring" in SCENARIOS[scenario] and SCENARIOS[scenario]["monitoring"].get("serviceMonitor"):
        expected |= {"ServiceMonitor", "PrometheusRule"}
    assert expected <= {d["kind"] for d in custom}
    for doc in custom:
        assert_valid_custom_resource(crds, doc)


def test_crd_validation_catches_a_misspelt_field(crds):
    """The strict CRD check is what makes the test above meaningful: prove it rejects a typo."""
    middleware = {"apiVersion": "traefik.io/v1alpha1", "kind": "Middleware", "metadata": {"name": "x"},
                  "spec": {"stripPrefix": {"prefix": ["/api"]}}}
    with pytest.raises(AssertionError, match="prefix"):
        assert_valid_custom_resource(crds, middleware)


@pytest.mark.parametrize("provider", ["aws-secrets-manager", "gcp-secret-manager", "azure-key-vault"])
def test_secret_store_examples_are_valid_and_match_their_values(helm, crds, provider):
    store = yaml.safe_load((EXAMPLES / f"external-secrets/{provider}.yaml").read_text())
    assert_valid_custom_resource(crds, store)
    short = {"aws-secrets-manager": "aws", "gcp-secret-manager": "gcp", "azure-key-vault": "azure"}[provider]
    docs = render_with(helm, EXAMPLES / f"external-secrets/values-{short}.yaml")
    (external,) = of_kind(docs, "ExternalSecret")
    assert external["spec"]["secretStoreRef"] == {"name": store["metadata"]["name"], "kind": store["kind"]}
    assert_valid_custom_resource(crds, external)


# --------------------------------------------------------------------------- images (air gap)

IMAGE_RE = re.compile(r"^(?P<name>[^@]+?)(?::(?P<tag>[\w][\w.-]*))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")


def test_airgap_values_relocate_every_image_and_pin_it_by_digest(helm):
    docs = render(helm, "airgap")
    images = all_images(docs)
    assert len(images) >= 7  # 5 pods, init containers included
    for workload_name, container, image in images:
        assert image.startswith(PRIVATE + "/"), f"{workload_name}/{container} pulls {image} from outside"
        assert re.search(r"@sha256:[0-9a-f]{64}$", image), f"{workload_name}/{container} is not digest-pinned: {image}"
    expected = {f"{PRIVATE}/{repo}@{digest_for(path)}" for path, (repo, _) in CONTRACT_IMAGES.items()}
    assert {image for *_, image in images} == expected  # all six used, nothing else


def test_each_values_path_drives_its_own_container(helm):
    docs = render(helm, "airgap")
    expect = {
        ("query", "query"): "query.image",
        ("indexing", "indexing"): "indexing.image",
        ("frontend", "frontend"): "frontend.image",
        ("opensearch", "opensearch"): "opensearch.image",
        ("opensearch-exporter", "exporter"): "opensearch.exporter.image",
        ("query", "wait-for-opensearch"): "init.image",
        ("indexing", "wait-for-opensearch"): "init.image",
    }
    for (component, container_name), path in expect.items():
        pod = workload(docs, component)["spec"]["template"]
        (container,) = [c for c in containers(pod) if c["name"] == container_name]
        assert container["image"].endswith("@" + digest_for(path)), (component, container_name, container["image"])


def test_global_image_registry_overrides_every_registry_and_pull_secrets_reach_every_pod(helm):
    docs = render(helm, "airgap-global-registry")
    for workload_name, container, image in all_images(docs):
        assert image.startswith("harbor.corp.example:8443/haystack/"), (workload_name, container, image)
    for w, template in pod_templates(docs):
        assert template["spec"]["imagePullSecrets"] == [{"name": "harbor-pull"}, {"name": "backup-pull"}], w["metadata"]["name"]


def test_default_images(helm):
    images = {(w, c): i for w, c, i in all_images(render(helm, "defaults"))}
    assert images[(f"{FULL}-opensearch", "opensearch")] == "docker.io/opensearchproject/opensearch:2.18.0"
    assert images[(f"{FULL}-opensearch-exporter", "exporter")] == "quay.io/prometheuscommunity/elasticsearch-exporter:v1.8.0"
    assert images[(f"{FULL}-query", "wait-for-opensearch")] == "docker.io/library/busybox:1.36.1"
    # first-party images as built locally, tagged with the chart's appVersion
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    for component in ("query", "indexing", "frontend"):
        assert images[(f"{FULL}-{component}", component)] == f"haystack-{component}:{app_version}"
    assert not any("imagePullSecrets" in t["spec"] for _, t in pod_templates(render(helm, "defaults")))


@pytest.mark.parametrize("registry", ["harbor.corp.example/haystack", "public.ecr.aws/a1b2c3d4",
                                      "registry.corp.example:8443", "registry.corp.example:8443/team/mirror/"])
def test_guide_keys_alone_move_every_image_to_the_private_registry(helm, registry):
    """`image.registry` / `image.tag`, as the deployment guide writes them, and nothing else: a Harbor
    project, ECR Public's alias path, a port; third-party images come from there too, with their tags."""
    docs = render_with(helm, sets=(f"image.registry={registry}", "image.tag=1.4.2-signed", "query.image.tag=1.4.3"))
    images = {(w, c): i for w, c, i in all_images(docs)}
    base = registry.rstrip("/")
    assert images[(f"{FULL}-indexing", "indexing")] == f"{base}/haystack-indexing:1.4.2-signed"
    assert images[(f"{FULL}-frontend", "frontend")] == f"{base}/haystack-frontend:1.4.2-signed"
    assert images[(f"{FULL}-query", "query")] == f"{base}/haystack-query:1.4.3"  # per-image tag wins
    assert images[(f"{FULL}-opensearch", "opensearch")] == f"{base}/opensearchproject/opensearch:2.18.0"
    assert images[(f"{FULL}-opensearch-exporter", "exporter")] == (
        f"{base}/prometheuscommunity/elasticsearch-exporter:v1.8.0")
    assert images[(f"{FULL}-query", "wait-for-opensearch")] == f"{base}/library/busybox:1.36.1"
    for (workload_name, container), image in images.items():
        assert image.startswith(base + "/"), (workload_name, container, image)


def test_an_image_block_registry_wins_over_the_guide_key(helm):
    docs = render_with(helm, sets=("image.registry=harbor.corp.example/haystack", "opensearch.image.registry=quay.io"))
    assert main_container(docs, "opensearch")["image"] == "quay.io/opensearchproject/opensearch:2.18.0"
    assert main_container(docs, "opensearch-exporter")["image"].startswith("harbor.corp.example/haystack/")


@pytest.mark.parametrize("registry", ["https://harbor.corp.example", "harbor.corp.example/Haystack",
                                      "-bad.example", "harbor.corp.example:port"])
def test_registry_values_that_are_not_host_port_path_are_refused(helm, registry):
    for key in ("image.registry", "global.imageRegistry", "init.image.registry"):
        result = run_helm(helm, *template_args(_values_file("defaults"), sets=(f"{key}={registry}",)))
        assert result.returncode != 0, f"{key}={registry} was accepted"
        assert "values don't meet the specifications of the schema(s)" in result.stderr


def test_digest_wins_over_tag(helm):
    digest = "sha256:" + "ab" * 32
    docs = render_with(helm, sets=(f"opensearch.image.digest={digest}",))
    assert main_container(docs, "opensearch")["image"] == f"docker.io/opensearchproject/opensearch@{digest}"


def test_no_template_hard_codes_an_image():
    """Every `image:` in every template is produced by the one helper."""
    offenders = []
    for path in sorted((CHART / "templates").glob("*")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"^\s*(-\s*)?image:", line) and 'include "haystack-rag.image"' not in line:
                offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert not offenders, offenders


# --------------------------------------------------------------------------- values schema

@pytest.mark.parametrize("setting, error", [
    ("secrets.provider=onepassword", r"secrets[./]provider"),
    ("query.replicaCount=three", r"query[./]replicaCount"),
    ("opensearch.image.digest=sha256:1234", r"opensearch[./]image[./]digest"),
    ("init.image.repo=busybox", r"init[./]image"),
    ("ingress.maxRequestBodyBytes=lots", r"ingress[./]maxRequestBodyBytes"),
    ("monitoring.enabled=maybe", r"monitoring[./]enabled"),
])
def test_values_schema_rejects_bad_values_with_helms_error(helm, setting, error):
    key, value = setting.split("=", 1)
    result = run_helm(helm, *template_args(), "--set-string" if key.endswith("enabled") else "--set", setting)
    assert result.returncode != 0, f"{setting} was accepted"
    assert "values don't meet the specifications of the schema(s)" in result.stderr
    assert re.search(error, result.stderr), result.stderr


# --------------------------------------------------------------------------- values that cannot work

def _template(helm, *sets: str, files: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
    return run_helm(helm, *template_args(*files, sets=sets))


def test_defaults_refuse_to_render_and_say_what_to_set(helm):
    """The upstream API exits 1 at start without an OpenAI key when the generator is openai."""
    result = _template(helm)
    assert result.returncode != 0
    assert "secrets.openaiApiKey is empty" in result.stderr and "llm.endpoint" in result.stderr
    assert "OpenAI API key is required" in result.stderr  # the upstream app's own words
    result = _template(helm, "secrets.openaiApiKey=sk-x", "config.useOpenAIEmbedder=true", "secrets.openaiApiKey=")
    assert "config.useOpenAIEmbedder is true" in result.stderr


@pytest.mark.parametrize("sets", [
    ("llm.endpoint=http://vllm.llm.svc:8000/v1",),                # in-cluster endpoint, no key needed
    ("secrets.existingSecret=corp-creds",),                       # the key lives in a Secret we cannot see
    ("secrets.provider=vault",),
    ("secrets.provider=externalSecrets", "secrets.externalSecrets.secretStoreRef.name=store"),
])
def test_an_empty_openai_key_is_fine_where_the_render_cannot_tell(helm, sets):
    result = _template(helm, "secrets.opensearchPassword=Working-Pw-1b9c!", *sets)
    assert result.returncode == 0, result.stderr


def test_an_empty_password_without_a_previous_secret_is_refused_under_helm_template(helm):
    """`helm template` (Argo CD) cannot look the previous password up: a fresh random one per render
    would lock every client out of OpenSearch's kept security index."""
    result = _template(helm, "secrets.openaiApiKey=sk-x")
    assert result.returncode != 0
    for hint in ("secrets.opensearchPassword", "secrets.existingSecret", "generateOpensearchPassword", "Argo CD"):
        assert hint in result.stderr, hint


def test_generated_secret_is_kept_on_uninstall(helm):
    (secret,) = of_kind(render(helm, "generated-password"), "Secret")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


@pytest.mark.parametrize("setting, error", [
    ("secrets.opensearchPassword=admin", r"secrets[./]opensearchPassword"),
    ("secrets.opensearchPassword=Sh0rt!pw", r"secrets[./]opensearchPassword"),             # 8 < 12 characters
    ("secrets.opensearchPassword=nouppercase-12345", r"secrets[./]opensearchPassword"),
    ("secrets.opensearchPassword=NoSymbolAtAll12345", r"secrets[./]opensearchPassword"),
    ("secrets.opensearchPassword=Has a space 123!", r"secrets[./]opensearchPassword"),
    ("secrets.opensearchUser=haystack", r"secrets[./]opensearchUser"),
    ("config.generator=ollama", r"config[./]generator"),
])
def test_weak_passwords_and_other_users_are_refused_by_the_schema(helm, setting, error):
    result = _template(helm, "secrets.openaiApiKey=sk-x", setting)
    assert result.returncode != 0, f"{setting} was accepted"
    assert "values don't meet the specifications of the schema(s)" in result.stderr
    assert re.search(error, result.stderr), result.stderr


def test_external_secrets_without_a_store_fails_with_a_clear_message(helm):
    result = run_helm(helm, *template_args(), "--set", "secrets.provider=externalSecrets")
    assert result.returncode != 0
    assert "secretStoreRef.name" in result.stderr


# --------------------------------------------------------------------------- secrets

API_SECRET_ENV = {"OPENSEARCH_USER": "opensearch-user", "OPENSEARCH_PASSWORD": "opensearch-password",
                  "OPENAI_API_KEY": "openai-api-key"}


def _leaks(doc: dict) -> list[str]:
    text = yaml.safe_dump(doc)
    found = []
    for value in SENTINELS.values():
        encoded = base64.b64encode(value.encode()).decode()
        if value in text or encoded in text:
            found.append(value)
    return found


@pytest.mark.parametrize("scenario", ["kubernetes", "sops", "external-secrets", "vault", "monitoring-off"])
def test_secret_values_appear_only_in_the_chart_managed_secret(helm, scenario):
    docs = render(helm, scenario)
    for doc in docs:
        if doc["kind"] == "Secret":
            continue
        assert not _leaks(doc), f"secret value in {doc['kind']}/{doc['metadata']['name']}"
    for _, template in pod_templates(docs):
        for c in containers(template):
            for e in c.get("env", []):
                assert not re.search(r"PASSWORD|API_KEY", e["name"]) or "value" not in e or e["name"].endswith("_FILE"), (
                    f"{c['name']}: {e['name']} is a literal")


@pytest.mark.parametrize("scenario", ["kubernetes", "sops"])
def test_kubernetes_provider_creates_the_secret_the_pods_read(helm, scenario):
    docs = render(helm, scenario)
    (secret,) = of_kind(docs, "Secret")
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {"opensearch-user": "admin",
                       "opensearch-password": SENTINELS["opensearchPassword"],
                       "openai-api-key": SENTINELS["openaiApiKey"]}
    for component in ("query", "indexing"):
        env = env_map(main_container(docs, component))
        for var, key in API_SECRET_ENV.items():
            assert env[var]["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": key}
    assert env_map(main_container(docs, "opensearch"))["OPENSEARCH_INITIAL_ADMIN_PASSWORD"]["valueFrom"][
        "secretKeyRef"] == {"name": secret["metadata"]["name"], "key": "opensearch-password"}
    exporter_env = env_map(main_container(docs, "opensearch-exporter"))
    assert exporter_env["ES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]


def test_empty_password_gets_a_strong_random_one_on_request(helm):
    docs = render(helm, "generated-password")
    (secret,) = of_kind(docs, "Secret")
    password = base64.b64decode(secret["data"]["opensearch-password"]).decode()
    # OpenSearch >= 2.12 refuses to start with a weak initial admin password
    assert len(password) >= 16 and re.search(r"[A-Z]", password) and re.search(r"[a-z]", password)
    assert re.search(r"[0-9]", password) and re.search(r"[^A-Za-z0-9]", password)


def test_existing_secret_is_referenced_not_created(helm):
    docs = render(helm, "existing-secret")
    assert not of_kind(docs, "Secret")
    for component in ("query", "indexing", "opensearch", "opensearch-exporter"):
        refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in main_container(docs, component)["env"]
                if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]}
        assert refs == {"corp-haystack-creds"}, component


def test_external_secrets_provider_syncs_the_keys_the_pods_read(helm):
    docs = render(helm, "external-secrets")
    assert not of_kind(docs, "Secret")  # ESO creates it
    (external,) = of_kind(docs, "ExternalSecret")
    assert external["apiVersion"] == "external-secrets.io/v1"
    assert external["spec"]["secretStoreRef"] == {"name": "corp-vault-store", "kind": "SecretStore"}
    target = external["spec"]["target"]["name"]
    synced = {d["secretKey"] for d in external["spec"]["data"]}
    assert synced == set(API_SECRET_ENV.values())
    for component in ("query", "indexing", "opensearch", "opensearch-exporter"):
        for e in main_container(docs, component)["env"]:
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == target and ref["key"] in synced, (component, ref)


def test_vault_provider_injects_files_and_creates_no_secret(helm):
    docs = render(helm, "vault")
    assert not of_kind(docs, "Secret") and not of_kind(docs, "ExternalSecret")
    needs = {"query": {"opensearch-user", "opensearch-password", "openai-api-key"},
             "indexing": {"opensearch-user", "opensearch-password", "openai-api-key"},
             "opensearch": {"opensearch-password"},
             "opensearch-exporter": {"opensearch-user", "opensearch-password"}}
    for component, keys in needs.items():
        pod = workload(docs, component)["spec"]["template"]
        annotations = pod["metadata"]["annotations"]
        assert annotations["vault.hashicorp.com/agent-inject"] == "true"
        assert annotations["vault.hashicorp.com/role"] == "haystack-rag"
        assert annotations["vault.hashicorp.com/secret-volume-path"] == "/vault/secrets"
        injected = {k.removeprefix("vault.hashicorp.com/agent-inject-secret-") for k in annotations
                    if k.startswith("vault.hashicorp.com/agent-inject-secret-")}
        assert injected == keys, component
        for key in keys:
            tmpl = annotations[f"vault.hashicorp.com/agent-inject-template-{key}"]
            assert tmpl.startswith('{{- with secret "secret/data/haystack-rag/') and ".Data.data" in tmpl
        # the service account token is what the agent logs in to Vault with
        assert pod["spec"]["automountServiceAccountToken"] is True
        # no container reads a Kubernetes Secret; the files it reads are the ones the agent renders
        text = json.dumps(pod["spec"])
        assert "secretKeyRef" not in text
        referenced = set(re.findall(r"/vault/secrets/([a-z-]+)", text))
        assert referenced == keys, (component, referenced)
    env = env_map(main_container(docs, "query"))
    assert env["OPENSEARCH_PASSWORD_FILE"]["value"] == "/vault/secrets/opensearch-password"
    assert "OPENSEARCH_PASSWORD" not in env
    # pods without secrets are not injected
    assert "vault.hashicorp.com/agent-inject" not in (
        workload(docs, "frontend")["spec"]["template"]["metadata"].get("annotations") or {})


def test_vault_field_names_that_are_not_identifiers_use_index(helm):
    pod = workload(render(helm, "vault"), "query")["spec"]["template"]
    tmpl = pod["metadata"]["annotations"]["vault.hashicorp.com/agent-inject-template-openai-api-key"]
    assert tmpl == '{{- with secret "secret/data/haystack-rag/openai" -}}{{ index .Data.data "api-key" }}{{- end -}}'


def test_sops_example_layout_matches_the_chart(helm):
    sops_config = yaml.safe_load((EXAMPLES / "sops/.sops.yaml").read_text())
    (rule,) = sops_config["creation_rules"]
    encrypted = re.compile(rule["encrypted_regex"])
    assert re.search(rule["path_regex"], "deploy/secrets.enc.yaml")
    assert re.search(rule["path_regex"], "secrets.prod.enc.yaml")
    # every secret value the chart takes is encrypted; the provider switch stays readable
    for key in SENTINELS:
        assert encrypted.search(key), key
    assert not encrypted.search("provider")
    layout = yaml.safe_load((EXAMPLES / "sops/secrets.enc.yaml").read_text())
    plain = yaml.safe_load((EXAMPLES / "sops/secrets.example.yaml").read_text())
    assert set(layout["secrets"]) == set(plain["secrets"]) == {"provider", *SENTINELS}
    assert layout["secrets"]["provider"] == "sops"
    for key in SENTINELS:
        assert layout["secrets"][key].startswith("ENC[AES256_GCM,")
    assert layout["sops"]["encrypted_regex"] == rule["encrypted_regex"]
    # the decrypted file is valid chart values
    (secret,) = of_kind(render_with(helm, EXAMPLES / "sops/secrets.example.yaml"), "Secret")
    assert base64.b64decode(secret["data"]["openai-api-key"]).decode() == "sk-CHANGE-ME"


def test_sops_example_recipient_is_an_obvious_placeholder():
    """Nobody can decrypt what is encrypted to a real sample key: the example names none, and its
    placeholder is no valid age recipient (bech32 is lower-case, no hyphens), so sops refuses it."""
    recipients = [yaml.safe_load((EXAMPLES / "sops/.sops.yaml").read_text())["creation_rules"][0]["age"],
                  yaml.safe_load((EXAMPLES / "sops/secrets.enc.yaml").read_text())["sops"]["age"][0]["recipient"]]
    for recipient in recipients:
        assert "REPLACE-ME" in recipient
        assert not re.fullmatch(r"age1[02-9ac-hj-np-z]{58}", recipient)


def test_plain_render_of_sops_ciphertext_is_refused(helm):
    """`helm template -f secrets.enc.yaml` without the helm-secrets plugin would deploy ENC[...] as the password."""
    result = run_helm(helm, *template_args(EXAMPLES / "sops/secrets.enc.yaml"))
    assert result.returncode != 0
    assert "secrets.opensearchPassword is still SOPS ciphertext" in result.stderr
    assert "helm secrets" in result.stderr
    # anywhere in the values, not only the three secret keys
    result = run_helm(helm, *template_args(_values_file("defaults"),
                                           sets=("ingress.host=ENC[AES256_GCM\\,data:eA==\\,type:str]",)))
    assert result.returncode != 0 and "SOPS ciphertext" in result.stderr


def test_config_map_holds_settings_only(helm):
    for scenario in ("kubernetes", "vault"):
        docs = render(helm, scenario)
        (config,) = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == f"{FULL}-config"]
        assert config["data"]["OPENSEARCH_HOST"] == f"https://{FULL}-opensearch:9200"
        assert not any(re.search(r"(^|_)(PASSWORD|API_KEY|SECRET|TOKEN)($|_)", k) for k in config["data"])


# --------------------------------------------------------------------------- labels

STANDARD = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by", "app.kubernetes.io/component", "helm.sh/chart")


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_object_and_pod_is_labelled_part_of_haystack_rag(helm, scenario):
    docs = render(helm, scenario)
    labelled = [(d["kind"], d["metadata"]) for d in docs]
    labelled += [(f"{w['kind']} pod", t["metadata"]) for w, t in pod_templates(docs)]
    labelled += [(f"{d['kind']} PVC", v["metadata"]) for d in of_kind(docs, "StatefulSet")
                 for v in d["spec"].get("volumeClaimTemplates", [])]
    for what, metadata in labelled:
        labels = metadata.get("labels") or {}
        assert labels.get("app.kubernetes.io/part-of") == "haystack-rag", (what, metadata.get("name"))
        missing = [k for k in STANDARD if k not in labels]
        assert not missing, (what, metadata.get("name"), missing)
    for w, template in pod_templates(docs):
        selector = w["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template["metadata"]["labels"].items()


def test_services_select_exactly_their_pods(helm):
    docs = render(helm, "kubernetes")
    pods = {w["metadata"]["name"]: t for w, t in pod_templates(docs)}
    for service in of_kind(docs, "Service"):
        selector = service["spec"]["selector"]
        matching = [n for n, t in pods.items() if selector.items() <= t["metadata"]["labels"].items()]
        assert len(matching) == 1, (service["metadata"]["name"], matching)
        ports = {p["name"]: p["containerPort"] for c in pods[matching[0]]["spec"]["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert target in ports or target in ports.values(), (service["metadata"]["name"], target)


def test_common_labels_reach_objects_and_pods(helm):
    docs = render_with(helm, sets=("commonLabels.team=search",))
    assert all(d["metadata"]["labels"]["team"] == "search" for d in docs)
    assert all(t["metadata"]["labels"]["team"] == "search" for _, t in pod_templates(docs))


# --------------------------------------------------------------------------- probes and ports

def test_api_probes_hit_health_on_the_service_port(helm):
    docs = render(helm, "kubernetes")
    # (component, Service port, container port); nginx runs as non-root, hence not on 80
    for component, port, container_port in (("query", 8002, 8002), ("indexing", 8001, 8001), ("frontend", 80, 8080)):
        container = main_container(docs, component)
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        path = "/" if component == "frontend" else "/health"
        for probe in ("readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert get["path"] == path and named[get["port"]] == container_port, (component, probe)
        service = one(docs, "Service", f"{FULL}-{component}")
        assert service["spec"]["ports"][0]["port"] == port
        assert named[service["spec"]["ports"][0]["targetPort"]] == container_port
    opensearch = main_container(docs, "opensearch")
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(opensearch)
    exporter = main_container(docs, "opensearch-exporter")
    assert exporter["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_opensearch_is_a_single_node_statefulset_with_a_volume(helm):
    docs = render(helm, "defaults")
    sts = one(docs, "StatefulSet", f"{FULL}-opensearch")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/usr/share/opensearch/data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert one(docs, "Service", sts["spec"]["serviceName"])["spec"]["clusterIP"] == "None"
    env = env_map(sts["spec"]["template"]["spec"]["containers"][0])
    assert env["discovery.type"]["value"] == "single-node"


def test_init_containers_wait_for_opensearch_before_the_apis_start(helm):
    docs = render(helm, "defaults")
    for component in ("query", "indexing"):
        init = next(c for c in workload(docs, component)["spec"]["template"]["spec"]["initContainers"]
                    if c["name"] == "wait-for-opensearch")  # (fetch-model is the other: the offline model)
        assert f"nc -z -w 2 {FULL}-opensearch 9200" in init["command"][-1]


# --------------------------------------------------------------------------- Traefik routing

_RULE_TOKEN = re.compile(r"\s*(?:(?P<fn>Host|PathPrefix|Path)\(`(?P<arg>[^`]*)`\)|(?P<op>&&|\|\||!|\(|\)))")


def traefik_rule_matches(rule: str, path: str, host: str = "") -> bool:
    """Evaluate the subset of Traefik v3's rule language the chart writes: Host, Path, PathPrefix,
    !, &&, || and parentheses (&& binds tighter than ||, as in Traefik)."""
    tokens, pos = [], 0
    while pos < len(rule.rstrip()):
        m = _RULE_TOKEN.match(rule, pos)
        assert m, f"unexpected rule syntax at {rule[pos:]!r}"
        tokens.append(m)
        pos = m.end()

    def atom(i):
        t = tokens[i]
        if t["op"] == "!":
            value, i = atom(i + 1)
            return not value, i
        if t["op"] == "(":
            value, i = disjunction(i + 1)
            assert tokens[i]["op"] == ")"
            return value, i + 1
        fn, arg = t["fn"], t["arg"]
        value = {"Host": host == arg, "Path": path == arg, "PathPrefix": path.startswith(arg)}[fn]
        return value, i + 1

    def chain(op, operand, combine):
        def parse(i):
            value, i = operand(i)
            while i < len(tokens) and tokens[i]["op"] == op:
                right, i = operand(i + 1)
                value = combine(value, right)
            return value, i
        return parse

    conjunction = chain("&&", atom, lambda a, b: a and b)
    disjunction = chain("||", conjunction, lambda a, b: a or b)

    value, end = disjunction(0)
    assert end == len(tokens), rule
    return value


def _route_for(ingress, path, host=""):
    """Which route Traefik picks for a request: the highest-priority one whose rule matches."""
    candidates = [r for r in ingress["spec"]["routes"] if traefik_rule_matches(r["match"], path, host)]
    return max(candidates, key=lambda r: r.get("priority", len(r["match"])))


@pytest.mark.parametrize("path, component, port, stripped", [
    ("/api/files", "indexing", 8001, True),
    ("/api/files/abc", "indexing", 8001, True),
    ("/api/upload", "indexing", 8001, True),
    ("/api/search", "query", 8002, True),
    ("/api", "query", 8002, True),
    ("/", "frontend", 80, False),
    ("/static/js/main.js", "frontend", 80, False),
])
def test_ingress_routes(helm, path, component, port, stripped):
    docs = render(helm, "defaults")
    (ingress,) = of_kind(docs, "IngressRoute")
    route = _route_for(ingress, path)
    (service,) = route["services"]
    assert (service["name"], service["port"]) == (f"{FULL}-{component}", port)
    one(docs, "Service", service["name"])
    middlewares = {one(docs, "Middleware", m["name"])["metadata"]["name"]: one(docs, "Middleware", m["name"])["spec"]
                   for m in route.get("middlewares", [])}
    strips = [s["stripPrefix"]["prefixes"] for s in middlewares.values() if "stripPrefix" in s]
    assert (strips == [["/api"]]) is stripped
    if component != "frontend":
        transport = one(docs, "ServersTransport", service["serversTransport"])
        assert transport["spec"]["forwardingTimeouts"]["responseHeaderTimeout"] == "600s"
    if component == "indexing":
        (buffering,) = [s["buffering"] for s in middlewares.values() if "buffering" in s]
        assert buffering["maxRequestBodyBytes"] == 100 * 1024 * 1024


@pytest.mark.parametrize("path", ["/api/metrics", "/api/docs", "/api/docs/oauth2-redirect", "/api/redoc",
                                  "/api/openapi.json"])
def test_metrics_and_api_docs_are_not_routed_to_the_api(helm, path):
    """They fall through to the frontend, whose nginx answers 404 for anything under /api."""
    docs = render(helm, "defaults")
    (ingress,) = of_kind(docs, "IngressRoute")
    (service,) = _route_for(ingress, path)["services"]
    assert service["name"] == f"{FULL}-frontend"
    nginx = one(docs, "ConfigMap", f"{FULL}-frontend-nginx")["data"]["nginx.conf"]
    assert re.search(r"location /api/ \{\s*return 404;", nginx)
    # the API's own routes still reach it
    assert _route_for(ingress, "/api/search")["services"][0]["name"] == f"{FULL}-query"


def test_metrics_and_docs_can_be_exposed_on_request(helm):
    docs = render_with(helm, sets=("ingress.exposeMetrics=true", "ingress.exposeDocs=true"))
    (ingress,) = of_kind(docs, "IngressRoute")
    for path in ("/api/metrics", "/api/docs", "/api/openapi.json"):
        assert _route_for(ingress, path)["services"][0]["name"] == f"{FULL}-query", path
    docs = render_with(helm, sets=("ingress.exposeMetrics=true",))
    (ingress,) = of_kind(docs, "IngressRoute")
    assert _route_for(ingress, "/api/metrics")["services"][0]["name"] == f"{FULL}-query"
    assert _route_for(ingress, "/api/docs")["services"][0]["name"] == f"{FULL}-frontend"


def test_the_rule_evaluator_follows_traefik_precedence():
    assert traefik_rule_matches("PathPrefix(`/a`) || PathPrefix(`/b`) && !Path(`/b/x`)", "/b/x") is False
    assert traefik_rule_matches("(PathPrefix(`/a`) || PathPrefix(`/b`)) && !Path(`/b/x`)", "/a") is True
    assert traefik_rule_matches("Host(`h`) && PathPrefix(`/`)", "/", host="g") is False


def test_ingress_host_and_tls(helm):
    docs = render_with(helm, sets=("ingress.host=rag.corp.example", "ingress.tls.enabled=true",
                                   "ingress.tls.secretName=rag-tls", "ingress.entryPoints={websecure}"))
    (ingress,) = of_kind(docs, "IngressRoute")
    assert all(r["match"].startswith("Host(`rag.corp.example`) && ") for r in ingress["spec"]["routes"])
    assert _route_for(ingress, "/api/search", host="rag.corp.example")["services"][0]["name"] == f"{FULL}-query"
    assert not any(traefik_rule_matches(r["match"], "/", host="other.example") for r in ingress["spec"]["routes"])
    assert ingress["spec"]["tls"] == {"secretName": "rag-tls"}
    assert ingress["spec"]["entryPoints"] == ["websecure"]


# --------------------------------------------------------------------------- monitoring

def _observability_module():
    path = REPO / "manifests/images/haystack-observability/haystack_observability.py"
    spec = importlib.util.spec_from_file_location("haystack_observability_for_chart_tests", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_monitoring_off_renders_no_monitoring_objects(helm):
    docs = render(helm, "monitoring-off")
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}
    assert not [d for d in of_kind(docs, "ConfigMap") if "grafana_dashboard" in d["metadata"]["labels"]]
    assert not [w for w, _ in pod_templates(docs) if "exporter" in w["metadata"]["name"]]
    for _, template in pod_templates(docs):
        assert "prometheus.io/scrape" not in (template["metadata"].get("annotations") or {})
    config = one(docs, "ConfigMap", f"{FULL}-config")
    assert config["data"]["HAYSTACK_METRICS_ENABLED"] == "false"


def test_service_monitor_scrapes_the_apis_and_the_exporter(helm):
    docs = render(helm, "kubernetes")
    (monitor,) = of_kind(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selector = monitor["spec"]["selector"]
    scraped = {}
    for service in of_kind(docs, "Service"):
        labels = service["metadata"]["labels"]
        if not selector["matchLabels"].items() <= labels.items():
            continue
        if not all(labels.get(e["key"]) in e["values"] for e in selector["matchExpressions"]):
            continue
        ports = {p["name"] for p in service["spec"]["ports"]}
        scraped[service["metadata"]["name"]] = [e["path"] for e in monitor["spec"]["endpoints"] if e["port"] in ports]
    assert scraped == {f"{FULL}-query": ["/metrics"], f"{FULL}-indexing": ["/metrics"],
                       f"{FULL}-opensearch-exporter": ["/metrics"]}


def test_prometheus_rule_has_the_alerts_the_guide_asks_for(helm):
    docs = render(helm, "kubernetes")
    (rule,) = of_kind(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    for name in ("HaystackRagPodRestartingFrequently", "HaystackRagPodCrashLooping", "HaystackRagOpenSearchDown",
                 "HaystackRagOpenSearchClusterRed", "HaystackRagOpenSearchClusterYellow",
                 "HaystackRagOpenSearchExporterDown",
                 "HaystackRagQueryTargetDown", "HaystackRagIndexingTargetDown"):
        assert name in alerts, name
    for name, alert in alerts.items():
        assert re.fullmatch(r"\d+[smh]", alert["for"]), name
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert alert["annotations"]["runbook_url"].startswith("https://"), name
        anchor = alert["annotations"]["runbook_url"].split("#")[1]
        assert anchor == name.lower()
    assert alerts["HaystackRagOpenSearchClusterRed"]["labels"]["severity"] == "critical"
    assert 'color="red"' in alerts["HaystackRagOpenSearchClusterRed"]["expr"]
    assert 'color="yellow"' in alerts["HaystackRagOpenSearchClusterYellow"]["expr"]
    # the job labels in the expressions are the Service names the ServiceMonitor produces
    assert f'job="{FULL}-query"' in alerts["HaystackRagQueryTargetDown"]["expr"]
    assert f'job="{FULL}-opensearch-exporter"' in alerts["HaystackRagOpenSearchExporterDown"]["expr"]
    one(docs, "Service", f"{FULL}-opensearch-exporter")
    restart = alerts["HaystackRagPodRestartingFrequently"]["expr"]
    assert f'namespace="{NAMESPACE}"' in restart and f'pod=~"{FULL}-.*"' in restart


def test_alert_rules_without_the_service_monitor_are_refused(helm):
    """The alerts select the job labels the chart's ServiceMonitor gives: without it they never match."""
    result = run_helm(helm, *template_args(_values_file("defaults"), sets=("monitoring.prometheusRule.enabled=true",)))
    assert result.returncode != 0 and "needs monitoring.serviceMonitor.enabled" in result.stderr


def test_runbook_anchors_exist_in_the_monitoring_doc(helm):
    doc = (REPO / "docs/monitoring.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", doc, re.M)}
    (rule,) = of_kind(render(helm, "kubernetes"), "PrometheusRule")
    for group in rule["spec"]["groups"]:
        for alert in group["rules"]:
            assert alert["annotations"]["runbook_url"].split("#")[1] in anchors, alert["alert"]


def test_dashboards_are_sidecar_configmaps_that_query_metrics_we_export(helm):
    docs = render(helm, "kubernetes")
    dashboards = {d["metadata"]["name"]: d for d in of_kind(docs, "ConfigMap")
                  if d["metadata"]["labels"].get("grafana_dashboard") == "1"}
    assert set(dashboards) == {f"{FULL}-dashboard-haystack-api", f"{FULL}-dashboard-opensearch"}
    exprs = {}
    for name, cm in dashboards.items():
        ((file, body),) = cm["data"].items()
        board = json.loads(body)
        assert board["uid"] and board["panels"]
        exprs[name] = " ".join(t["expr"] for p in board["panels"] for t in p.get("targets", []))
    api = exprs[f"{FULL}-dashboard-haystack-api"]
    # request rate, latency, errors from the metrics the observability layer really exposes
    exposed = set(re.findall(r"^# TYPE (\S+)", _observability_module().MetricsRegistry().render(), re.M))
    used = set(re.findall(r"\b(http_[a-z_]+?)(?:_bucket|_sum|_count)?\{", api))
    assert used and used <= exposed, used - exposed
    assert "histogram_quantile" in api and 'status=~"5.."' in api
    assert "elasticsearch_cluster_health_status" in exprs[f"{FULL}-dashboard-opensearch"]


def test_error_rate_alert_uses_metrics_we_export(helm):
    (rule,) = of_kind(render(helm, "kubernetes"), "PrometheusRule")
    exposed = set(re.findall(r"^# TYPE (\S+)", _observability_module().MetricsRegistry().render(), re.M))
    exprs = " ".join(r["expr"] for g in rule["spec"]["groups"] for r in g["rules"])
    assert set(re.findall(r"\b(http_[a-z_]+)\{", exprs)) <= exposed


def test_api_pods_advertise_metrics_and_the_exporter_talks_to_opensearch(helm):
    docs = render(helm, "defaults")
    for component, port in (("query", "8002"), ("indexing", "8001")):
        annotations = workload(docs, component)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == port and annotations["prometheus.io/path"] == "/metrics"
    exporter = main_container(docs, "opensearch-exporter")
    assert f"--es.uri=https://{FULL}-opensearch:9200" in exporter["args"]


# --------------------------------------------------------------------------- Traefik CRDs (pinned reference)

def test_crd_lock_pins_the_upstream_traefik_crds():
    lock = yaml.safe_load(CRD_LOCK.read_text())
    (entry,) = lock["crds"]
    assert entry["url"] == ("https://raw.githubusercontent.com/traefik/traefik/v3.7.9/docs/content/reference/"
                            "dynamic-configuration/kubernetes-crd-definition-v1.yml")
    assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])
    shared = SHARED_CRDS / "traefik-v3.7.9_kubernetes-crd-definition-v1.yml"
    if not shared.exists():
        pytest.skip(f"{shared} is absent: cannot recompute the pinned sha256")
    data = shared.read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert len(data) == entry["size"]
    names = {d["metadata"]["name"] for d in yaml.safe_load_all(data) if d}
    assert names == set(entry["provides"])
    # the URL is the upstream file SOURCES.md names: repository, tag and path
    row = next(line for line in (SHARED_CRDS / "SOURCES.md").read_text().splitlines()
               if line.startswith(f"| {shared.name} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    repo, path, commit, version = cells[3], cells[4], cells[5], cells[6]
    tag = re.search(r"tag (v[0-9.]+)", version).group(1)
    assert entry["url"] == f"https://raw.githubusercontent.com/{repo}/{tag}/{path}"
    assert entry["commit"] == commit and entry["version"] == tag


def test_the_pinned_crds_cover_every_traefik_kind_the_chart_renders(helm):
    entry = yaml.safe_load(CRD_LOCK.read_text())["crds"][0]
    kinds = {d["kind"] for d in render(helm, "defaults") if d["apiVersion"].startswith("traefik.io/")}
    plural = {"IngressRoute": "ingressroutes", "Middleware": "middlewares", "ServersTransport": "serverstransports"}
    assert kinds == set(plural)
    assert {f"{plural[k]}.traefik.io" for k in kinds} <= set(entry["provides"])


def test_no_crd_file_is_copied_into_the_project():
    for path in (REPO / "manifests").rglob("*.y*ml"):
        assert "kind: CustomResourceDefinition" not in path.read_text(), path


def test_packaged_chart_is_self_contained(helm, tmp_path):
    """What goes into the bundle: one .tgz with no dependencies, rendering the same objects."""
    result = run_helm(helm, "package", str(CHART), "--destination", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (package,) = tmp_path.glob("haystack-rag-*.tgz")
    with tarfile.open(package) as tar:
        names = set(tar.getnames())
    assert {"haystack-rag/Chart.yaml", "haystack-rag/values.schema.json",
            "haystack-rag/dashboards/haystack-api.json", "haystack-rag/dashboards/opensearch.json"} <= names
    assert not any(n.startswith("haystack-rag/charts/") for n in names)
    assert "dependencies" not in yaml.safe_load((CHART / "Chart.yaml").read_text())
    rendered = run_helm(helm, "template", RELEASE, str(package), "--namespace", NAMESPACE,
                        "--values", str(_values_file("airgap")))
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    assert sorted(i for *_, i in all_images(docs)) == sorted(i for *_, i in all_images(render(helm, "airgap")))


def test_optional_switches(helm):
    docs = render(helm, "options")
    kinds = {d["kind"] for d in docs}
    assert not {"IngressRoute", "Middleware", "ServersTransport", "ServiceAccount", "Secret"} & kinds
    assert {t["spec"]["serviceAccountName"] for _, t in pod_templates(docs)} == {"corp-sa"}
    claim = one(docs, "PersistentVolumeClaim", f"{FULL}-indexing-files")
    assert claim["spec"]["storageClassName"] == "fast"
    volumes = workload(docs, "indexing")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "files", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}} in volumes
    sts = workload(docs, "opensearch")
    sysctl = [c for c in sts["spec"]["template"]["spec"]["initContainers"] if c["name"] == "sysctl"]
    assert sysctl and sysctl[0]["securityContext"]["privileged"] is True
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "50Gi"
    # KV version 1 secrets have no .Data.data level
    annotations = sts["spec"]["template"]["metadata"]["annotations"]
    assert annotations["vault.hashicorp.com/agent-inject-template-opensearch-password"] == (
        '{{- with secret "secret/data/haystack-rag/opensearch" -}}{{ .Data.password }}{{- end -}}')
