"""The observability layer baked into the API images (manifests/images/haystack-observability).

Driven through httpx's ASGI transport, i.e. as a real HTTP client would see it: /metrics output a
Prometheus server can parse, labels by route template, JSON log lines, secrets read from files.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import logging
import logging.config
import re
import sys
from pathlib import Path

import httpx
import pytest

LAYER = Path(__file__).resolve().parents[2] / "manifests/images/haystack-observability/haystack_observability.py"


def _load_module():
    spec = importlib.util.spec_from_file_location("haystack_observability", LAYER)
    module = importlib.util.module_from_spec(spec)
    sys.modules["haystack_observability"] = module  # dictConfig resolves "haystack_observability.JsonFormatter"
    spec.loader.exec_module(module)
    return module


obs = _load_module()


class FakeRoute:
    """What Starlette's router leaves in scope["route"] once it matched."""

    def __init__(self, path: str) -> None:
        self.path = path


async def demo_app(scope, receive, send):
    """A tiny ASGI app with the shape of the query service: a templated route, errors, 404s."""
    path = scope["path"]
    if path == "/health":
        status, body = 200, b'{"status":"ok"}'
        scope["route"] = FakeRoute("/health")
    elif path.startswith("/files/"):
        status, body = 200, b"{}"
        scope["route"] = FakeRoute("/files/{file_id}")
    elif path == "/search":
        scope["route"] = FakeRoute("/search")
        raise RuntimeError("generator failed")
    elif path == "/slow":
        scope["route"] = FakeRoute("/slow")
        await asyncio.sleep(0.03)
        status, body = 503, b"busy"
    else:
        status, body = 404, b"not found"
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def run(coro):
    return asyncio.run(coro)


async def _requests(app, calls):
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return [await client.request(method, url) for method, url in calls]


# --------------------------------------------------------------------------- Prometheus text format

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.e+-]+|\+Inf|-Inf|NaN)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse_exposition(text: str) -> dict[str, dict]:
    """A strict-enough parser of the text format: every line is HELP, TYPE or a valid sample of the
    family announced before it."""
    families: dict[str, dict] = {}
    current = None
    assert text.endswith("\n"), "the text format must end with a newline"
    for line in text.splitlines():
        if line.startswith("# HELP "):
            current = line.split(" ", 3)[2]
            families.setdefault(current, {"type": None, "samples": []})
        elif line.startswith("# TYPE "):
            _, _, current, kind = line.split(" ", 3)
            assert kind in {"counter", "gauge", "histogram", "summary", "untyped"}
            families.setdefault(current, {"type": None, "samples": []})["type"] = kind
        else:
            match = SAMPLE.match(line)
            assert match, f"not a valid sample line: {line!r}"
            name = match.group(1)
            assert current is not None and name in (current, *(current + s for s in ("_bucket", "_sum", "_count"))), (
                f"sample {name} outside its family {current}")
            labels = {}
            if match.group(3):
                pairs = list(LABEL.finditer(match.group(3)))
                assert "".join(m.group(0) for m in pairs) == match.group(3), f"bad label set in {line!r}"
                labels = {m.group(1): m.group(2) for m in pairs}
            families[current]["samples"].append((name, labels, float(match.group(4))))
    return families


def sample(families, name, **labels):
    family = name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in families:
            family = name[: -len(suffix)]
    values = [v for n, l, v in families[family]["samples"] if n == name and all(l.get(k) == w for k, w in labels.items())]
    assert len(values) == 1, f"{name}{labels}: {values}"
    return values[0]


def test_metrics_endpoint_counts_requests_by_route_template_and_status():
    app = obs.wrap(demo_app)
    responses = run(_requests(app, [
        ("GET", "/health"), ("GET", "/files/1"), ("GET", "/files/2"), ("DELETE", "/files/3"),
        ("GET", "/search"), ("GET", "/wp-admin.php"), ("GET", "/metrics"),
    ]))
    metrics = responses[-1]
    assert metrics.status_code == 200
    assert metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = parse_exposition(metrics.text)
    assert families["http_requests_total"]["type"] == "counter"
    assert families["http_request_duration_seconds"]["type"] == "histogram"

    # one series per route template, not per URL
    assert sample(families, "http_requests_total", method="GET", path="/files/{file_id}", status="200") == 2
    assert sample(families, "http_requests_total", method="DELETE", path="/files/{file_id}", status="200") == 1
    assert sample(families, "http_requests_total", method="GET", path="/health", status="200") == 1
    # an exception in the app is a 500, and unknown URLs collapse into one series
    assert sample(families, "http_requests_total", method="GET", path="/search", status="500") == 1
    assert sample(families, "http_requests_total", method="GET", path="<unmatched>", status="404") == 1
    assert not any(l.get("path") in ("/files/1", "/wp-admin.php") for _, l, _ in families["http_requests_total"]["samples"])
    # /metrics itself is not counted, and nothing is in flight once all requests finished
    assert not any(l.get("path") == "/metrics" for _, l, _ in families["http_requests_total"]["samples"])
    assert all(v == 0 for _, _, v in families["http_requests_in_progress"]["samples"])
    assert sample(families, "process_start_time_seconds") > 1.6e9


def test_latency_histogram_is_cumulative_and_consistent():
    app = obs.wrap(demo_app)
    responses = run(_requests(app, [("GET", "/slow")] * 3 + [("GET", "/health")] + [("GET", "/metrics")]))
    assert [r.status_code for r in responses[:3]] == [503] * 3
    families = parse_exposition(responses[-1].text)
    buckets = [(float(l["le"]), v) for n, l, v in families["http_request_duration_seconds"]["samples"]
               if n == "http_request_duration_seconds_bucket" and l["path"] == "/slow"]
    bounds = [b for b, _ in buckets]
    assert bounds == sorted(bounds) and bounds[-1] == float("inf")
    counts = [c for _, c in buckets]
    assert counts == sorted(counts), "bucket counts must be cumulative"
    assert counts[-1] == sample(families, "http_request_duration_seconds_count", path="/slow") == 3
    # each /slow request sleeps 30 ms: none fits the 10 ms or 25 ms buckets, the sum is at least 90 ms
    assert dict(buckets)[0.025] == 0
    assert sample(families, "http_request_duration_seconds_sum", path="/slow") >= 0.09


def test_label_values_are_escaped():
    registry = obs.MetricsRegistry()
    registry.requests.inc("GET", 'a"b\\c\nd', "200")
    families = parse_exposition(registry.render())
    assert sample(families, "http_requests_total", path='a\\"b\\\\c\\nd') == 1


def test_non_http_scopes_pass_through_untouched():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    run(obs.wrap(app)({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]


def test_metrics_can_be_served_on_another_path():
    app = obs.wrap(demo_app, metrics_path="/internal/metrics")
    default, moved = run(_requests(app, [("GET", "/metrics"), ("GET", "/internal/metrics")]))
    assert default.status_code == 404  # reaches the app
    assert "http_requests_total" in moved.text


# --------------------------------------------------------------------------- JSON logs

@pytest.fixture
def captured_logs(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stream)
    monkeypatch.setenv("HAYSTACK_SERVICE", "query")
    obs.configure_logging("INFO", "json")
    yield stream
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False,
                               "root": {"level": "WARNING", "handlers": []}})


def test_every_log_line_is_json_including_access_records_and_exceptions(captured_logs):
    run(_requests(obs.wrap(demo_app), [("GET", "/files/7"), ("GET", "/health"), ("GET", "/slow")]))
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("app").exception("indexing failed")

    lines = captured_logs.getvalue().splitlines()
    records = [json.loads(line) for line in lines]  # fails on any non-JSON line
    access = [r for r in records if r["logger"] == "haystack_observability.access"]
    # successful health probes are not logged, everything else is, with structured fields
    assert [(r["http_path"], r["http_status"]) for r in access] == [("/files/7", 200), ("/slow", 503)]
    assert access[0]["http_route"] == "/files/{file_id}" and access[0]["http_method"] == "GET"
    assert access[1]["duration_ms"] >= 30
    assert all(r["service"] == "query" for r in records)
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", records[0]["time"])
    uvicorn = [r for r in records if r["logger"] == "uvicorn.error"]
    assert uvicorn and uvicorn[0]["message"] == "Application startup complete."
    failure = [r for r in records if r["logger"] == "app"][0]
    assert failure["level"] == "error" and "ValueError: boom" in failure["exception"]


def test_uvicorn_access_log_is_silenced_in_favour_of_the_structured_one(captured_logs):
    logging.getLogger("uvicorn.access").info('127.0.0.1:1 - "GET / HTTP/1.1" 200')
    assert captured_logs.getvalue() == ""


def test_text_format_can_be_chosen():
    config = obs.logging_config("debug", "text")
    assert config["root"]["level"] == "DEBUG"
    assert "()" not in config["formatters"]["default"]


# --------------------------------------------------------------------------- secrets from files

def test_secret_files_fill_unset_variables(tmp_path):
    (tmp_path / "pw").write_text("s3cr3t!\n")
    (tmp_path / "key").write_text("sk-abc")
    env = {"OPENSEARCH_PASSWORD_FILE": str(tmp_path / "pw"), "OPENAI_API_KEY_FILE": str(tmp_path / "key"),
           "OPENSEARCH_USER": "admin", "OPENSEARCH_USER_FILE": str(tmp_path / "missing-but-unused")}
    loaded = obs.load_secret_files(env)
    assert loaded == ["OPENAI_API_KEY", "OPENSEARCH_PASSWORD"]
    assert env["OPENSEARCH_PASSWORD"] == "s3cr3t!"  # the trailing newline is dropped
    assert env["OPENAI_API_KEY"] == "sk-abc"
    assert env["OPENSEARCH_USER"] == "admin"  # an explicit value wins over its file


def test_unreadable_secret_file_stops_startup_with_the_variable_named(tmp_path):
    env = {"OPENSEARCH_PASSWORD_FILE": str(tmp_path / "not-rendered-yet")}
    with pytest.raises(obs.SecretFileError, match="OPENSEARCH_PASSWORD_FILE=.*not-rendered-yet"):
        obs.load_secret_files(env)


def test_entry_point_requires_an_app(monkeypatch, capsys):
    monkeypatch.delenv("HAYSTACK_APP", raising=False)
    with pytest.raises(SystemExit) as exc:
        obs.main([], environ={})
    assert exc.value.code == 2
    assert "HAYSTACK_APP" in capsys.readouterr().err
