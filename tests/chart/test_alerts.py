"""The chart's alerts, evaluated by Prometheus' own rule engine (`promtool test rules`).

The PrometheusRule is rendered by real Helm; its groups become a Prometheus rules file; synthetic
series shaped like what the pinned exporters really export (labels included) drive each alert
through the situations a user cares about, and each check says which alerts must fire at that
moment, with which labels, and (by listing none) which must stay quiet.

promtool comes from Debian's `prometheus` package (scripts/install-deps.sh).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "manifests/haystack-rag"
HELM = REPO / ".tools/bin/helm3"
RELEASE, NS = "rag", "haystack"
FULL = f"{RELEASE}-haystack-rag"
EXPORTER_JOB = f"{FULL}-opensearch-exporter"
VALUES = {
    "secrets": {"opensearchPassword": "Alerts-Test-Pw-1!", "openaiApiKey": "sk-alerts"},
    "monitoring": {"enabled": True, "serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
}

# Metric names the alerts may use, as the pinned exporters define them:
# prometheus-community/elasticsearch_exporter v1.8.0 (collector/cluster_health.go: cluster_health_*
# with labels cluster[, color]; collector/nodes.go: node_stats_up, set to 0 when /_nodes/stats fails)
# and kube-state-metrics v2 (pod metrics: kube_pod_container_status_restarts_total,
# kube_pod_container_status_waiting_reason{reason}), plus Prometheus' own `up` and the observability
# layer's http_requests_total.  elasticsearch_cluster_health_up is NOT among them (gone in v1.8.0).
EXPORTED = {
    "elasticsearch_cluster_health_status", "elasticsearch_cluster_health_number_of_data_nodes",
    "elasticsearch_cluster_health_number_of_nodes", "elasticsearch_cluster_health_unassigned_shards",
    "elasticsearch_node_stats_up",
    # collector/nodes.go, used by the OpenSearch dashboard
    "elasticsearch_indices_docs", "elasticsearch_indices_store_size_bytes", "elasticsearch_indices_search_query_total",
    "elasticsearch_indices_indexing_index_total", "elasticsearch_jvm_memory_used_bytes", "elasticsearch_jvm_memory_max_bytes",
    "elasticsearch_jvm_gc_collection_seconds_sum", "elasticsearch_filesystem_data_available_bytes",
    "kube_pod_container_status_restarts_total", "kube_pod_container_status_waiting_reason",
    "up", "http_requests_total",
}
PROMQL_WORDS = {"increase", "rate", "max_over_time", "max", "sum", "by", "on", "and", "or", "absent"}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is missing: run `bash scripts/install-deps.sh` (Debian package prometheus)")
    return path


@pytest.fixture(scope="module")
def rule_groups(tmp_path_factory) -> list[dict]:
    if not HELM.exists():
        pytest.skip(f"{HELM} is missing: run `bash scripts/install-helm.sh`")
    values = tmp_path_factory.mktemp("alerts") / "values.yaml"
    values.write_text(yaml.safe_dump(VALUES))
    out = subprocess.run([str(HELM), "template", RELEASE, str(CHART), "-n", NS, "-f", str(values),
                          "-s", "templates/prometheusrule.yaml"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    (rule,) = [d for d in yaml.safe_load_all(out.stdout) if d]
    return rule["spec"]["groups"]


def _alerts(groups) -> dict[str, dict]:
    return {r["alert"]: r for g in groups for r in g["rules"]}


# --------------------------------------------------------------------------- series

def ksm(metric: str, pod: str, container: str, **extra: str) -> str:
    """A kube-state-metrics series as Prometheus stores it (its own job/instance labels)."""
    labels = {"namespace": NS, "pod": pod, "container": container, "uid": "0b9c", "job": "kube-state-metrics",
              "instance": "10.42.0.9:8080", **extra}
    return metric + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


EXPORTER_TARGET = {"namespace": NS, "job": EXPORTER_JOB, "instance": "10.42.0.7:9114",
                   "pod": f"{FULL}-opensearch-exporter-7d9f-x2k4", "service": EXPORTER_JOB, "endpoint": "metrics"}


def exporter(metric: str, **extra: str) -> str:
    labels = {**EXPORTER_TARGET, **extra}
    return metric + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def health(color_now: str, minutes: int, *, data_nodes: str) -> list[tuple[str, str]]:
    """The exporter's cluster_health series: status one-hot by colour, the data-node count."""
    series = [(exporter("elasticsearch_cluster_health_status", cluster=FULL, color=c),
               f"{int(c == color_now)}x{minutes}") for c in ("green", "yellow", "red")]
    series.append((exporter("elasticsearch_cluster_health_number_of_data_nodes", cluster=FULL), data_nodes))
    series.append((exporter("elasticsearch_node_stats_up"), f"1x{minutes}"))
    series.append((exporter("up"), f"1x{minutes}"))
    return series


def waiting(pattern: str) -> str:
    """Expand a minute-by-minute pattern: W = CrashLoopBackOff sample, R = running (no series)."""
    return " ".join("1" if ch == "W" else "_" for ch in pattern)


CRASH_POD, CRASH_CONTAINER = f"{FULL}-query-6c8d9-abcde", "query"
POD_LABELS = {"namespace": NS, "pod": CRASH_POD, "container": CRASH_CONTAINER, "uid": "0b9c",
              "job": "kube-state-metrics", "instance": "10.42.0.9:8080"}

# name -> (input series, [(eval time, alert, [expected label sets]), ...])
# An empty list of label sets means: this alert must NOT be firing then.
CASES = {
    "restarts every 2 minutes: frequent restarts": (
        [(ksm("kube_pod_container_status_restarts_total", CRASH_POD, CRASH_CONTAINER), "0 0 1 1 2 2 3 3 4 4 5 5 6 6 7 7 8 8 9 9 10 10 11 11 12 12 13 13 14 14 15")],
        [("6m", "HaystackRagPodRestartingFrequently", []),
         ("20m", "HaystackRagPodRestartingFrequently", [{**POD_LABELS, "severity": "warning"}])]),
    "crash loop at the 5-minute back-off cap": (
        # a restart about every 5.5 minutes; waiting in CrashLoopBackOff between the short runs
        [(ksm("kube_pod_container_status_restarts_total", CRASH_POD, CRASH_CONTAINER),
          "0 1 2 3 4 4 4 4 4 5 5 5 5 5 6 6 6 6 6 6 7 7 7 7 7 8 8 8 8 8 9 9 9 9 9 10 10 10 10 10 11 11 11 11 11 12"),
         (ksm("kube_pod_container_status_waiting_reason", CRASH_POD, CRASH_CONTAINER, reason="CrashLoopBackOff"),
          waiting("RWRWRWWWWRWWWWRWWWWWRWWWWRWWWWRWWWWRWWWWRWWWWR"))],
        [("40m", "HaystackRagPodRestartingFrequently", []),   # ~3 restarts per 15m: not above 3
         ("40m", "HaystackRagPodCrashLooping",
          [{**POD_LABELS, "reason": "CrashLoopBackOff", "severity": "critical"}])]),
    "one crash, then healthy": (
        [(ksm("kube_pod_container_status_restarts_total", CRASH_POD, CRASH_CONTAINER), "0 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1"),
         (ksm("kube_pod_container_status_waiting_reason", CRASH_POD, CRASH_CONTAINER, reason="CrashLoopBackOff"),
          waiting("RRWRRRRRRRRRRRRRRRRRRRRRRRRRRRR"))],
        [("20m", "HaystackRagPodRestartingFrequently", []), ("30m", "HaystackRagPodCrashLooping", [])]),
    "another release's pods are not ours": (
        [(ksm("kube_pod_container_status_restarts_total", "other-haystack-rag-query-1", "query"), "0+1x30"),
         (ksm("kube_pod_container_status_restarts_total", CRASH_POD, CRASH_CONTAINER, namespace="staging"), "0+1x30")],
        [("25m", "HaystackRagPodRestartingFrequently", [])]),
    "opensearch goes down": (
        # health series vanish when the exporter's calls fail; node_stats_up turns 0
        [*((s, v + " _x20") for s, v in health("green", 10, data_nodes="1x10")[:4]),
         (exporter("elasticsearch_node_stats_up"), "1x10 0x20"), (exporter("up"), "1x30")],
        [("12m", "HaystackRagOpenSearchDown", []),
         ("18m", "HaystackRagOpenSearchDown", [{**EXPORTER_TARGET, "severity": "critical"}]),
         ("18m", "HaystackRagOpenSearchClusterRed", []), ("18m", "HaystackRagOpenSearchExporterDown", [])]),
    "cluster red": (
        health("red", 20, data_nodes="1x20"),
        [("1m", "HaystackRagOpenSearchClusterRed", []),
         ("5m", "HaystackRagOpenSearchClusterRed",
          [{"namespace": NS, "job": EXPORTER_JOB, "cluster": FULL, "severity": "critical"}]),
         ("5m", "HaystackRagOpenSearchDown", [])]),
    "yellow on a single node with replicas: no news": (
        health("yellow", 120, data_nodes="1x120"),
        [("60m", "HaystackRagOpenSearchClusterYellow", []), ("119m", "HaystackRagOpenSearchClusterYellow", [])]),
    "yellow on a three-node cluster": (
        health("yellow", 40, data_nodes="3x40"),
        [("10m", "HaystackRagOpenSearchClusterYellow", []),
         ("30m", "HaystackRagOpenSearchClusterYellow",
          [{"namespace": NS, "job": EXPORTER_JOB, "cluster": FULL, "severity": "warning"}])]),
    "three nodes degraded to one, yellow": (
        [*(sv for sv in health("yellow", 40, data_nodes="3x10 1x30") )],
        [("35m", "HaystackRagOpenSearchClusterYellow",
          [{"namespace": NS, "job": EXPORTER_JOB, "cluster": FULL, "severity": "warning"}])]),
    "green three-node cluster": (
        health("green", 40, data_nodes="3x40"),
        [("30m", "HaystackRagOpenSearchClusterYellow", []), ("30m", "HaystackRagOpenSearchClusterRed", []),
         ("30m", "HaystackRagOpenSearchDown", []), ("30m", "HaystackRagOpenSearchExporterDown", [])]),
    "exporter target down": (
        [(exporter("up"), "1x5 0x20")],
        [("8m", "HaystackRagOpenSearchExporterDown", []),
         ("15m", "HaystackRagOpenSearchExporterDown", [{**EXPORTER_TARGET, "severity": "warning"}])]),
    "exporter never scraped": (
        [(ksm("kube_pod_container_status_restarts_total", CRASH_POD, CRASH_CONTAINER), "0x20")],
        [("10m", "HaystackRagOpenSearchExporterDown",
          [{"namespace": NS, "job": EXPORTER_JOB, "severity": "warning"}])]),
    "red in another namespace is not ours": (
        [(s.replace(f'namespace="{NS}"', 'namespace="staging"'), v) for s, v in health("red", 20, data_nodes="1x20")],
        [("10m", "HaystackRagOpenSearchClusterRed", [])]),
}


def _expand(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)


def _promtool_file(groups, rules_name: str) -> dict:
    alerts = _alerts(groups)
    tests = []
    for name, (series, checks) in CASES.items():
        rule_tests = []
        for at, alert, expected in checks:
            assert alert in alerts, f"{name}: no alert {alert}"
            annotations = alerts[alert]["annotations"]
            rule_tests.append({"eval_time": at, "alertname": alert, "exp_alerts": [
                {"exp_labels": labels, "exp_annotations": {k: _expand(v, labels) for k, v in annotations.items()}}
                for labels in expected]})
        tests.append({"name": name, "interval": "1m",
                      "input_series": [{"series": s, "values": v} for s, v in series],
                      "alert_rule_test": rule_tests})
    return {"rule_files": [rules_name], "evaluation_interval": "1m", "tests": tests}


def test_alerts_fire_when_they_should_and_only_then(rule_groups, tmp_path):
    promtool = _promtool()
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups}, sort_keys=False))
    check = subprocess.run([promtool, "check", "rules", str(tmp_path / "rules.yaml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    (tmp_path / "alerts_test.yaml").write_text(yaml.safe_dump(_promtool_file(rule_groups, "rules.yaml"), sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(tmp_path / "alerts_test.yaml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_catches_a_wrong_expectation(rule_groups, tmp_path):
    """The harness can fail: an alert expected where it must stay quiet is reported."""
    promtool = _promtool()
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups}, sort_keys=False))
    doc = _promtool_file(rule_groups, "rules.yaml")
    doc["tests"] = [t for t in doc["tests"] if t["name"] == "yellow on a single node with replicas: no news"]
    doc["tests"][0]["alert_rule_test"][0]["exp_alerts"] = [{"exp_labels": {"severity": "warning"}}]
    (tmp_path / "alerts_test.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(tmp_path / "alerts_test.yaml")], capture_output=True, text=True)
    assert result.returncode != 0


def test_alerts_use_only_metrics_the_pinned_exporters_export(rule_groups):
    for alert, rule in _alerts(rule_groups).items():
        expr = re.sub(r'"[^"]*"', '""', rule["expr"])           # drop label values
        expr = re.sub(r"\[[0-9a-z]+\]", "", expr)               # and range selectors
        names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=\{|\)|$|\s)", expr))
        names -= PROMQL_WORDS | {"namespace", "job", "cluster", "pod", "container", "color", "reason", "status"}
        names = {n for n in names if not n.isdigit()}
        assert names <= EXPORTED, (alert, names - EXPORTED)


def test_every_alert_keeps_the_namespace_label(rule_groups):
    """Alertmanager routes by namespace: aggregations must keep it (absent() keeps matchers' labels)."""
    for alert, rule in _alerts(rule_groups).items():
        for by in re.findall(r"\bby \(([^)]*)\)", rule["expr"]):
            assert "namespace" in [x.strip() for x in by.split(",")], alert
        assert f'namespace="{NS}"' in rule["expr"], alert


def test_the_opensearch_dashboard_queries_only_metrics_the_exporter_exports():
    board = (CHART / "dashboards/opensearch.json").read_text()
    used = set(re.findall(r"\b(elasticsearch_[a-z_]+)", board))
    assert used and used <= EXPORTED, used - EXPORTED
