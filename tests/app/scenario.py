"""One run of the real haystack-rag services, meant to be started inside ``unshare -n`` (a network
namespace with nothing but its own loopback), so any outbound connection fails instead of leaving.

    unshare -n PYTHON scenario.py CONFIG.json REPORT.json

It brings ``lo`` up, starts the OpenSearch and OpenAI-compatible stand-ins (standins.py), the upstream
indexing and query services under the observability layer (``python -m haystack_observability``,
exactly the images' command), and a real Prometheus scraping their /metrics; uploads a document
through the indexing API, asks the query API about it, reads Prometheus' view, and writes a JSON
report for tests/app/test_upstream_app.py to judge. Everything it starts is stopped before it exits.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import trustme

sys.path.insert(0, str(Path(__file__).resolve().parent))
from standins import OpenAIStandIn, OpenSearchStandIn  # noqa: E402

PORTS = {"indexing": 8001, "query": 8002}
PROM_PORT = 9090
LLM_MODEL = "qwen2.5-0.5b-instruct"  # what an in-cluster vLLM would serve; not the upstream's gpt-4o
AUDIT_HOOK = '''\
import os, socket, sys
_log = os.environ.get("AIRGAP_AUDIT_CONNECT_LOG")
def _hook(event, args):
    # Every outbound connection the interpreter attempts, answered or not: the proof that the query
    # path tries no host but the namespace's own loopback (unshare -n only makes such attempts fail).
    if event == "socket.connect" and _log:
        sock, address = args[0], args[1]
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            with open(_log, "a") as fh:
                fh.write(f"{address[0]} {address[1]}\\n")
    elif event == "socket.getaddrinfo" and _log:
        with open(_log, "a") as fh:
            fh.write(f"resolve {args[0]}\\n")
sys.addaudithook(_hook)
'''


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, **kw) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        try:
            r = httpx.get(url, timeout=2, **kw)
            if r.status_code == 200:
                return r
            last = r.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer 200 within {timeout} s (last: {last})")


def app_tree(upstream: Path, service: str, work: Path) -> Path:
    """/app as backend/Dockerfile.<service> lays it out: COPY src/common/ and src/<service>/."""
    root = work / f"{service}-app"
    shutil.copytree(upstream / "backend/src/common", root / "common")
    shutil.copytree(upstream / "backend/src" / service, root / service)
    return root


def main(config_path: str, report_path: str) -> int:
    cfg = json.loads(Path(config_path).read_text())
    work = Path(cfg["work"])
    upstream, layer, model = Path(cfg["upstream"]), Path(cfg["layer"]), Path(cfg["model"])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    report: dict = {"logs": {}, "connects": {}}

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(work / "os.pem"))
    password = "S3cure-Passw0rd!x"
    (work / "opensearch-password").write_text(password + "\n")  # read by the layer as a *_FILE secret
    opensearch = OpenSearchStandIn("admin", password, (work / "os.pem", work / "os.pem")).start()
    llm = OpenAIStandIn(LLM_MODEL).start()
    sitedir = work / "site"
    sitedir.mkdir()
    (sitedir / "sitecustomize.py").write_text(AUDIT_HOOK)
    procs: dict[str, subprocess.Popen] = {}
    try:
        for service, port in PORTS.items():
            env = {
                "PATH": os.environ["PATH"], "HOME": str(work / "home"), "HF_HOME": str(work / "hf-home"),
                "PYTHONPATH": f"{layer}{os.pathsep}{sitedir}", "PYTHONDONTWRITEBYTECODE": "1",
                "AIRGAP_AUDIT_CONNECT_LOG": str(work / f"connect-{service}.log"),
                # what the overlay image and the chart set
                "HAYSTACK_APP": f"{service}.main:app", "HAYSTACK_PORT": str(port), "HAYSTACK_SERVICE": service,
                "HAYSTACK_LOG_FORMAT": "json", "HAYSTACK_HOST": "127.0.0.1",
                "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
                "HAYSTACK_TELEMETRY_ENABLED": "False",
                "OPENSEARCH_HOST": opensearch.url, "OPENSEARCH_USER": "admin",
                "OPENSEARCH_PASSWORD_FILE": str(work / "opensearch-password"),
                "GENERATOR": "openai", "USE_OPENAI_EMBEDDER": "false",
                "OPENAI_BASE_URL": llm.url, "HAYSTACK_LLM_MODEL": LLM_MODEL,  # no OPENAI_API_KEY at all
                "HAYSTACK_EMBEDDER_MODEL": str(model), "HAYSTACK_EMBEDDING_DIM": "384",
                "FILE_STORAGE_PATH": str(work / "files"), "INDEX_ON_STARTUP": "false",
                "TOKENIZERS_PARALLELISM": "false",
            }
            log = open(work / f"{service}.log", "wb")
            procs[service] = subprocess.Popen([cfg["app_python"], "-m", "haystack_observability"],
                                              cwd=app_tree(upstream, service, work), env=env, stdout=log,
                                              stderr=subprocess.STDOUT)
        for service, port in PORTS.items():
            wait_http(f"http://127.0.0.1:{port}/health", 300, procs[service])

        prom_cfg = work / "prometheus.yml"
        prom_cfg.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": f"haystack-{s}", "metrics_path": "/metrics",
                                "static_configs": [{"targets": [f"127.0.0.1:{p}"], "labels": {"service": s}}]}
                               for s, p in PORTS.items()],
        }))
        prom_log = open(work / "prometheus.log", "wb")
        procs["prometheus"] = subprocess.Popen(
            [cfg["prometheus"], f"--config.file={prom_cfg}", f"--storage.tsdb.path={work / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{PROM_PORT}"], stdout=prom_log, stderr=subprocess.STDOUT)
        wait_http(f"http://127.0.0.1:{PROM_PORT}/-/ready", 60, procs["prometheus"])

        doc = cfg["document"]
        up = httpx.post(f"http://127.0.0.1:{PORTS['indexing']}/files", timeout=300,
                        files=[("files", ("facts.txt", doc.encode(), "text/plain"))])
        report["upload"] = {"status": up.status_code, "body": up.json()}
        search = httpx.post(f"http://127.0.0.1:{PORTS['query']}/search", json={"query": cfg["question"]},
                            timeout=300)
        report["search"] = {"status": search.status_code, "body": search.json()}
        httpx.get(f"http://127.0.0.1:{PORTS['query']}/no-such-route", timeout=10)

        # Prometheus' own view. Its scrape manager applies discovered targets only on a 5 s reload
        # tick, so a fixed sleep races it on a slow host: poll until every target has been scraped
        # (health no longer "unknown") and a scrape later than the requests has landed.
        queries = {"up": "up", "search_requests": 'http_requests_total{path="/search"}',
                   "upload_requests": 'http_requests_total{path="/files"}'}
        deadline = time.monotonic() + 90
        while True:
            report["prometheus"] = {}
            for key, q in queries.items():
                r = httpx.get(f"http://127.0.0.1:{PROM_PORT}/api/v1/query", params={"query": q}, timeout=10)
                report["prometheus"][key] = r.json()["data"]["result"]
            targets = httpx.get(f"http://127.0.0.1:{PROM_PORT}/api/v1/targets", timeout=10).json()
            report["prometheus"]["targets"] = [{"job": t["labels"]["job"], "health": t["health"],
                                                "lastError": t["lastError"]}
                                               for t in targets["data"]["activeTargets"]]
            # The queries above run one after another while scrapes land, so one pass can see a
            # target in a later query and not in an earlier one: stop only when every query's answer
            # covers every job (the "up" series included), not when the last one does.
            jobs = {t["job"] for t in report["prometheus"]["targets"]}
            scraped = (len(jobs) == len(PORTS)
                       and all(t["health"] != "unknown" for t in report["prometheus"]["targets"])
                       and {r["metric"].get("job") for r in report["prometheus"]["up"]} == jobs
                       and report["prometheus"]["search_requests"] and report["prometheus"]["upload_requests"])
            if scraped or time.monotonic() > deadline:
                break
            time.sleep(1)
        report["opensearch_requests"] = opensearch.requests
        report["opensearch_docs"] = {i: len(v["docs"]) for i, v in opensearch.indices.items()}
        report["opensearch_dimension"] = {i: v["dimension"] for i, v in opensearch.indices.items()}
        report["llm_requests"] = llm.requests
    finally:
        for name, p in procs.items():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        opensearch.stop()
        llm.stop()
        for service in PORTS:
            log_file = work / f"{service}.log"
            report["logs"][service] = log_file.read_text(errors="replace").splitlines() if log_file.exists() else []
            c = work / f"connect-{service}.log"
            report["connects"][service] = c.read_text().splitlines() if c.exists() else []
        report["hf_home_files"] = sorted(str(p.relative_to(work)) for p in (work / "hf-home").rglob("*")
                                         if p.is_file()) if (work / "hf-home").exists() else []
        Path(report_path).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
