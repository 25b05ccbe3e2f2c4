"""Security of the rendered chart: Pod Security "restricted", checkov, NetworkPolicies, what the
IngressRoute exposes, and the OpenSearch admin-password hook against a stand-in.

Pod Security is checked by tests/pod_security.py (a strict reading of the Pod Security Standards:
no cluster, hence no Pod Security Admission, runs here) and by checkov, the real scanner, offline
in its own virtualenv (scripts/install-checkov.sh).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import pod_security
from test_chart import (FULL, NAMESPACE, SCENARIOS, TOOLS, _values_file, helm, of_kind, one,  # noqa: F401
                        pod_templates, render, render_with, run_helm, template_args, workload)

REPO = Path(__file__).resolve().parents[2]
CHECKOV = REPO / ".tools/checkov-venv/bin/checkov"

# Pods that cannot meet "restricted", and why: only the two opt-in OpenSearch init containers.
ROOT_INITS = {"sysctl": "writes vm.max_map_count on the node: privileged, root",
              "fix-permissions": "chowns the data volume: root with CHOWN/DAC_OVERRIDE/FOWNER"}
RESTRICTED_SCENARIOS = [s for s in SCENARIOS if s != "options"]


# --------------------------------------------------------------------------- Pod Security Standards

@pytest.mark.parametrize("scenario", RESTRICTED_SCENARIOS)
def test_every_pod_meets_pod_security_restricted(helm, scenario):
    templates = pod_templates(render(helm, scenario))
    assert len(templates) >= 4
    for workload_doc, template in templates:
        assert pod_security.restricted(template) == [], workload_doc["metadata"]["name"]


def test_only_the_opt_in_root_init_containers_break_restricted(helm):
    """sysctlInit and fixPermissionsInit (both off by default) are the documented exceptions."""
    docs = render(helm, "options")
    for workload_doc, template in pod_templates(docs):
        violations = pod_security.restricted(template)
        if workload_doc["metadata"]["name"] != f"{FULL}-opensearch":
            assert violations == [], workload_doc["metadata"]["name"]
            continue
        offenders = {v.split(":")[0].removeprefix("initContainer ") for v in violations}
        assert offenders == set(ROOT_INITS), violations
        assert not pod_security.restricted({**template, "spec": {
            **template["spec"], "initContainers": []}})  # the rest of the pod is fine


def test_the_checker_rejects_what_pod_security_admission_rejects():
    """Each control, broken on purpose, is reported (the checker above can fail)."""
    good = {"metadata": {}, "spec": {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": False,
                                                          "capabilities": {"drop": ["ALL"]}}}],
        "volumes": [{"name": "v", "emptyDir": {}}]}}
    assert pod_security.restricted(good) == []

    def broken(path_value):
        doc = json.loads(json.dumps(good))
        *path, key = path_value[0]
        node = doc
        for p in path:
            node = node[p]
        node[key] = path_value[1]
        return pod_security.restricted(doc)

    for change in [
        (["spec", "securityContext", "seccompProfile"], {}),                           # no seccomp
        (["spec", "securityContext", "runAsNonRoot"], False),                          # root allowed
        (["spec", "containers", 0, "securityContext", "allowPrivilegeEscalation"], True),
        (["spec", "containers", 0, "securityContext", "capabilities"], {"drop": ["NET_RAW"]}),
        (["spec", "containers", 0, "securityContext", "capabilities"], {"drop": ["ALL"], "add": ["CHOWN"]}),
        (["spec", "containers", 0, "securityContext", "privileged"], True),
        (["spec", "containers", 0, "securityContext", "runAsUser"], 0),
        (["spec", "hostNetwork"], True),
        (["spec", "volumes"], [{"name": "h", "hostPath": {"path": "/"}}]),
        (["spec", "volumes"], [{"name": "n", "nfs": {"server": "x", "path": "/"}}]),
        (["spec", "securityContext", "sysctls"], [{"name": "vm.max_map_count", "value": "262144"}]),
        (["spec", "containers", 0, "ports"], [{"containerPort": 80, "hostPort": 80}]),
    ]:
        assert broken(change), change


# --------------------------------------------------------------------------- checkov

# checkov's Kubernetes checks this chart does not pass on purpose, each with the reason.
CHECKOV_ACCEPTED = {
    # the next two only without digests: `airgap load`'s values file pins every image (checked below)
    "CKV_K8S_43": "images pinned by digest: the chart's defaults name tags, the values file digests",
    "CKV_K8S_15": "pull policy IfNotPresent with a tag: in an air gap the private registry is the only source",
    "CKV_K8S_35": "secrets as environment variables: the upstream application reads only env vars "
                  "(the Vault provider uses files)",
    "CKV_K8S_21": "the namespace is the release namespace (helm -n), not written into the objects",
    "CKV_K8S_40": "UIDs below 10000: nginx (101), OpenSearch (1000) and the exporter (65534) run as "
                  "the users their upstream images own their files with",
    "CKV_K8S_38": "only with the Vault provider: the agent logs in to Vault with the service-account token",
}
# OpenSearch writes its demo security configuration, keystore and logs into its image at start.
CHECKOV_ACCEPTED_FOR = {("CKV_K8S_22", f"StatefulSet.{NAMESPACE}.{FULL}-opensearch"),
                        ("CKV_K8S_22", f"StatefulSet.default.{FULL}-opensearch")}


def _checkov(manifest: Path) -> dict:
    if not CHECKOV.exists():
        pytest.skip(f"{CHECKOV} is missing: run `bash scripts/install-checkov.sh`")
    cmd = [str(CHECKOV), "-f", str(manifest), "--framework", "kubernetes", "-o", "json", "--quiet", "--compact",
           "--skip-download"]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_SKIP_VERSION_CHECK": "true", "ANY_HOST_NAME": "",
           "HOME": str(manifest.parent)}
    if os.geteuid() == 0 and shutil.which("unshare"):
        cmd = ["unshare", "-n", *cmd]  # no network at all: the scan must not need any
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.stdout.strip(), result.stderr
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


@pytest.mark.parametrize("scenario", ["airgap", "vault"])
def test_checkov_finds_nothing_beyond_the_accepted_checks(helm, scenario, tmp_path):
    if helm.name != "helm3":
        pytest.skip("one render is enough for checkov")
    manifest = tmp_path / "rendered.yaml"
    result = run_helm(helm, *template_args(_values_file(scenario)))
    assert result.returncode == 0, result.stderr
    manifest.write_text(result.stdout)
    report = _checkov(manifest)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    unexpected = [f for f in failed if f[0] not in CHECKOV_ACCEPTED and f not in CHECKOV_ACCEPTED_FOR]
    assert not unexpected, unexpected
    assert report["summary"]["passed"] > 100   # the scan really ran over the workloads
    if scenario == "airgap":  # digests, no Vault: those acceptances are not needed there
        assert not {"CKV_K8S_43", "CKV_K8S_15", "CKV_K8S_38"} & {check for check, _ in failed}


# --------------------------------------------------------------------------- NetworkPolicies

def _matches(selector: dict, labels: dict) -> bool:
    """A LabelSelector (matchLabels only, as the chart writes them; {} matches everything)."""
    assert set(selector) <= {"matchLabels"}, selector
    return (selector.get("matchLabels") or {}).items() <= labels.items()


def _peer_admits(peer: dict, pod: dict) -> bool:
    if "ipBlock" in peer:
        return pod.get("external", False)
    if "namespaceSelector" in peer:
        if not _matches(peer["namespaceSelector"], pod["namespace_labels"]):
            return False
    elif pod["namespace"] != NAMESPACE:
        return False
    return _matches(peer.get("podSelector") or {}, pod["labels"])


def _rule_admits(rule: dict, side: str, pod: dict, port: int) -> bool:
    peers = rule.get(side)
    if peers is not None and peers != [] and not any(_peer_admits(p, pod) for p in peers):
        return False
    ports = rule.get("ports")
    return not ports or any(p.get("port") == port for p in ports)


def allowed(policies: list[dict], src: dict, dst: dict, port: int) -> bool:
    """Kubernetes semantics: a direction is open unless a policy selects the pod for it; then the
    union of that direction's rules decides.  Both egress of src and ingress of dst must allow."""
    def direction(pod, kind, side, peer):
        selecting = [p for p in policies if pod["namespace"] == NAMESPACE and _matches(p["spec"]["podSelector"], pod["labels"])
                     and kind in p["spec"]["policyTypes"]]
        if not selecting:
            return True
        return any(_rule_admits(r, side, peer, port) for p in selecting for r in p["spec"].get(kind.lower(), []))
    return direction(src, "Egress", "to", dst) and direction(dst, "Ingress", "from", src)


def _pod(docs, component):
    return {"labels": workload(docs, component)["spec"]["template"]["metadata"]["labels"],
            "namespace": NAMESPACE, "namespace_labels": {"kubernetes.io/metadata.name": NAMESPACE}}


OUTSIDE = {
    "traefik": {"labels": {"app.kubernetes.io/name": "traefik"}, "namespace": "kube-system",
                "namespace_labels": {"kubernetes.io/metadata.name": "kube-system"}},
    "prometheus": {"labels": {"app.kubernetes.io/name": "prometheus"}, "namespace": "monitoring",
                   "namespace_labels": {"kubernetes.io/metadata.name": "monitoring"}},
    "coredns": {"labels": {"k8s-app": "kube-dns"}, "namespace": "kube-system",
                "namespace_labels": {"kubernetes.io/metadata.name": "kube-system"}},
    "some-pod": {"labels": {"app": "other"}, "namespace": "other", "namespace_labels": {}},
    "internet": {"labels": {}, "namespace": "", "namespace_labels": {}, "external": True},
}


@pytest.mark.parametrize("src, dst, port, expect", [
    ("query", "opensearch", 9200, True),
    ("indexing", "opensearch", 9200, True),
    ("opensearch-exporter", "opensearch", 9200, True),
    ("opensearch", "opensearch", 9300, True),
    ("traefik", "frontend", 8080, True),
    ("traefik", "query", 8002, True),
    ("traefik", "indexing", 8001, True),
    ("prometheus", "query", 8002, True),
    ("prometheus", "opensearch-exporter", 9114, True),
    ("query", "coredns", 53, True),
    ("frontend", "coredns", 53, True),
    # what nobody needs
    ("traefik", "opensearch", 9200, False),
    ("frontend", "opensearch", 9200, False),
    ("some-pod", "opensearch", 9200, False),
    ("some-pod", "query", 8002, False),
    ("query", "some-pod", 5432, False),
    ("opensearch", "internet", 443, False),
    ("frontend", "internet", 443, False),
    ("opensearch-exporter", "internet", 443, False),
    ("query", "frontend", 8080, False),
])
def test_network_policies_allow_what_the_app_needs_and_nothing_else(helm, src, dst, port, expect):
    docs = render(helm, "kubernetes")
    policies = of_kind(docs, "NetworkPolicy")
    pods = {c: _pod(docs, c) for c in ("query", "indexing", "frontend", "opensearch", "opensearch-exporter")}
    pods.update(OUTSIDE)
    assert allowed(policies, pods[src], pods[dst], port) is expect


def test_default_deny_selects_every_pod_of_the_release(helm):
    docs = render(helm, "kubernetes")
    deny = one(docs, "NetworkPolicy", f"{FULL}-default-deny")
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny["spec"]
    for _, template in pod_templates(docs):
        assert _matches(deny["spec"]["podSelector"], template["metadata"]["labels"])


@pytest.mark.parametrize("endpoint, port", [("http://vllm.llm.svc:8000/v1", 8000), ("http://ollama.llm.svc/v1", 80),
                                            ("https://tgi.llm.svc/v1", 443)])
def test_the_in_cluster_llm_endpoint_is_reachable_from_the_apis_only(helm, endpoint, port):
    docs = render_with(helm, sets=(f"llm.endpoint={endpoint}", "networkPolicy.apiEgress=null"))
    policies = of_kind(docs, "NetworkPolicy")
    llm = {"labels": {"app": "vllm"}, "namespace": "llm", "namespace_labels": {"kubernetes.io/metadata.name": "llm"}}
    for component in ("query", "indexing"):
        assert allowed(policies, _pod(docs, component), llm, port), component
        assert not allowed(policies, _pod(docs, component), llm, port + 1), component
    assert not allowed(policies, _pod(docs, "frontend"), llm, port)
    # narrowed to the LLM's namespace
    docs = render_with(helm, sets=(f"llm.endpoint={endpoint}", "networkPolicy.apiEgress=null",
                                   "networkPolicy.llmTo[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=llm"))
    policies = of_kind(docs, "NetworkPolicy")
    elsewhere = {**llm, "namespace": "other", "namespace_labels": {"kubernetes.io/metadata.name": "other"}}
    assert allowed(policies, _pod(docs, "query"), llm, port)
    assert not allowed(policies, _pod(docs, "query"), elsewhere, port)


def test_vault_agents_may_reach_vault_and_network_policies_can_be_switched_off(helm):
    docs = render(helm, "vault")
    policies = of_kind(docs, "NetworkPolicy")
    vault = {"labels": {}, "namespace": "", "namespace_labels": {}, "external": True}
    for component in ("query", "opensearch", "opensearch-exporter"):
        assert allowed(policies, _pod(docs, component), vault, 8200), component
    assert not allowed(policies, _pod(docs, "frontend"), vault, 8200)
    result = run_helm(helm, *template_args(_values_file("defaults"), sets=("networkPolicy.enabled=false",)))
    assert result.returncode == 0 and "kind: NetworkPolicy" not in result.stdout


# --------------------------------------------------------------------------- OpenSearch admin password

SCRIPT = REPO / "manifests/haystack-rag/files/sync-admin-password.sh"


def _sync(standin, tmp_path, password: str, *, via_file: bool = False, timeout: int = 30):
    """Run the hook as the kubelet would (postStart exec, sh), against the stand-in."""
    env = {"PATH": os.environ["PATH"], "OPENSEARCH_URL": standin.url, "OPENSEARCH_CONFIG_DIR": str(tmp_path),
           "SYNC_TIMEOUT_SECONDS": str(timeout), "SYNC_RETRY_SECONDS": "0.2",
           "SYNC_LOG": str(tmp_path / "hook.log")}
    if via_file:
        (tmp_path / "opensearch-password").write_text(password)
        env["ADMIN_PASSWORD_FILE"] = str(tmp_path / "opensearch-password")
    else:
        env["OPENSEARCH_INITIAL_ADMIN_PASSWORD"] = password
    result = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=timeout + 30)
    log = (tmp_path / "hook.log").read_text() if (tmp_path / "hook.log").exists() else ""
    return result, log


@pytest.fixture
def curl():
    if not shutil.which("curl"):
        pytest.skip("curl is missing (the OpenSearch image has it; the hook uses it)")


def test_password_in_sync_is_left_alone(curl, tmp_path):
    from opensearch_security_standin import SecurityStandIn
    with SecurityStandIn("Current-Pw-9a!x") as standin:
        standin.write_client_cert(tmp_path)
        result, log = _sync(standin, tmp_path, "Current-Pw-9a!x")
    assert result.returncode == 0, log + result.stderr
    assert "in sync" in log
    assert not [r for r in standin.requests if r[0] == "PUT"]
    assert [r[0] for r in standin.requests].count("GET") == 3   # two 503s while starting, then 200


@pytest.mark.parametrize("new", ["Rotated-Pw-2b!y", 'Quote"And\\Backslash-1$x', "Only'Single`Ticks-7%&"])
@pytest.mark.parametrize("via_file", [False, True])
def test_a_rotated_password_is_applied_with_the_admin_certificate(curl, tmp_path, new, via_file):
    """Reinstall on a kept volume, SOPS/ESO/Vault rotation: the security index still has the old one."""
    from opensearch_security_standin import SecurityStandIn
    with SecurityStandIn("Old-Initial-Pw-1!") as standin:
        standin.write_client_cert(tmp_path)
        result, log = _sync(standin, tmp_path, new, via_file=via_file)
        assert result.returncode == 0, log + result.stderr
        assert standin.admin_password == new
    assert ("PUT", "/_plugins/_security/api/internalusers/admin", "cert") in standin.requests
    assert "admin password applied" in log
    assert new not in log + result.stdout + result.stderr


def test_a_password_opensearch_refuses_fails_the_hook_loudly(curl, tmp_path):
    from opensearch_security_standin import SecurityStandIn
    with SecurityStandIn("Old-Initial-Pw-1!", unavailable_requests=0) as standin:
        standin.write_client_cert(tmp_path)
        result, log = _sync(standin, tmp_path, "weakpassword")
    assert result.returncode != 0
    assert "HTTP 400" in log and "validation" in log
    assert standin.admin_password == "Old-Initial-Pw-1!"


def test_without_the_super_admin_certificate_nothing_changes(curl, tmp_path):
    from opensearch_security_standin import SecurityStandIn
    with SecurityStandIn("Old-Initial-Pw-1!", unavailable_requests=0) as standin:
        standin.write_client_cert(tmp_path, trusted=False)   # a certificate the node does not trust
        result, log = _sync(standin, tmp_path, "Rotated-Pw-2b!y")
        assert result.returncode != 0 and standin.admin_password == "Old-Initial-Pw-1!"
        (tmp_path / "kirk.pem").unlink()
        result, log = _sync(standin, tmp_path, "Rotated-Pw-2b!y")
    assert result.returncode != 0 and "no super-admin certificate" in log


def test_an_opensearch_that_never_starts_times_out(curl, tmp_path):
    from opensearch_security_standin import SecurityStandIn
    with SecurityStandIn("Pw-Never-Used-1!", unavailable_requests=10**6) as standin:
        result, log = _sync(standin, tmp_path, "Pw-Never-Used-1!", timeout=4)
    assert result.returncode != 0 and "did not answer within 4s (last status 503)" in log


def test_the_hook_runs_in_the_opensearch_container_with_the_backend_password(helm):
    for scenario, expect in (("kubernetes", "OPENSEARCH_INITIAL_ADMIN_PASSWORD"), ("vault", "ADMIN_PASSWORD_FILE")):
        docs = render(helm, scenario)
        sts = workload(docs, "opensearch")
        container = sts["spec"]["template"]["spec"]["containers"][0]
        assert container["lifecycle"]["postStart"]["exec"]["command"] == ["sh", "/opt/haystack-rag/sync-admin-password.sh"]
        assert expect in {e["name"] for e in container["env"]}, scenario
        scripts = one(docs, "ConfigMap", f"{FULL}-opensearch-scripts")
        assert scripts["data"]["sync-admin-password.sh"] == SCRIPT.read_text()
        # a rotation through the values restarts the pods (checksum of the secret values)
        assert "checksum/secrets" in sts["spec"]["template"]["metadata"]["annotations"]


# --------------------------------------------------------------------------- frontend nginx as non-root

def test_the_frontend_nginx_conf_runs_as_a_non_root_user_with_only_tmp_writable(helm, tmp_path):
    """The chart's nginx.conf, run by the real nginx (Debian's) as `nobody`: it starts with its pid and
    temp files under the emptyDir, serves the single-page app, and answers 404 under /api."""
    import socket
    import tempfile
    import time

    import httpx

    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None or os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root, setpriv and nginx (scripts/install-deps.sh installs nginx)")
    conf = one(render(helm, "defaults"), "ConfigMap", f"{FULL}-frontend-nginx")["data"]["nginx.conf"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    emptydir = Path(tempfile.mkdtemp(prefix="haystack-nginx-tmp-"))     # the pod's /tmp
    site = Path(tempfile.mkdtemp(prefix="haystack-nginx-html-"))        # the image's read-only html
    try:
        os.chown(emptydir, 65534, 65534)
        site.chmod(0o755)
        (site / "index.html").write_text("<div id=root>haystack</div>")
        (site / "static.js").write_text("console.log(1)")
        conf = (conf.replace("listen 8080;", f"listen 127.0.0.1:{port};").replace("/tmp/", f"{emptydir}/")
                .replace("root /usr/share/nginx/html;", f"root {site};"))
        assert f"{emptydir}/nginx.pid" in conf
        (site / "nginx.conf").write_text(conf)
        proc = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", nginx,
                                 "-e", "stderr", "-c", str(site / "nginx.conf"), "-g", "daemon off;"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                if proc.poll() is not None:
                    pytest.fail(f"nginx exited: {proc.stderr.read().decode()}")
                try:
                    first = httpx.get(base + "/", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            assert first.status_code == 200 and "haystack" in first.text
            assert httpx.get(base + "/static.js").text == "console.log(1)"
            assert "haystack" in httpx.get(base + "/some/client/route").text      # SPA fallback
            for path in ("/api/metrics", "/api/docs", "/api"):
                assert httpx.get(base + path).status_code == 404, path
            assert (emptydir / "nginx.pid").exists()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    finally:
        shutil.rmtree(emptydir, ignore_errors=True)
        shutil.rmtree(site, ignore_errors=True)
