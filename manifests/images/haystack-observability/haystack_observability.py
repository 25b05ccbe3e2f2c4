"""Observability layer for the haystack-rag API images (query and indexing).

The upstream FastAPI services expose no metrics and log plain text.  This module is copied into the
images at build time (see Dockerfile and README.md next to it) and started in front of the
application:

    python -m haystack_observability src.main:app --port 8002

It then

* reads secrets that arrive as files: for every ``NAME_FILE`` environment variable whose ``NAME``
  is unset, ``NAME`` is set to the file's content (the Helm chart's Vault mode points
  ``OPENSEARCH_PASSWORD_FILE`` etc. at the files the Vault agent renders);
* configures logging so that every record, uvicorn's included, is one JSON object per line on
  stdout (``HAYSTACK_LOG_FORMAT=text`` keeps plain text);
* wraps the ASGI application in :class:`PrometheusMiddleware`, which answers ``GET /metrics`` in the
  Prometheus text format (0.0.4) and records request counts, latencies and in-flight requests;
* runs the wrapped application with uvicorn (already present in the images).

Standard library only, so the layer adds one file and no dependencies.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import logging.config
import math
import os
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_BUCKETS",
    "JsonFormatter",
    "MetricsRegistry",
    "PrometheusMiddleware",
    "SecretFileError",
    "apply_runtime_settings",
    "configure_logging",
    "load_secret_files",
    "logging_config",
    "main",
    "wrap",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds.  RAG answers take from tens of milliseconds (health, listing) to minutes (LLM calls,
# indexing large files), hence the long tail.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)
UNMATCHED_PATH = "<unmatched>"

log = logging.getLogger("haystack_observability")
access_log = logging.getLogger("haystack_observability.access")


# --------------------------------------------------------------------------- secrets from files

class SecretFileError(RuntimeError):
    """A ``NAME_FILE`` variable points at a file that cannot be read."""


_FILE_VAR = re.compile(r"^([A-Z][A-Z0-9_]*)_FILE$")


def load_secret_files(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Set ``NAME`` from the file named by ``NAME_FILE``, for every such variable.

    A variable that is already set and non-empty wins over its file.  One trailing newline is
    removed (``echo`` and most templating add one).  Returns the names that were set, sorted.
    Raises :class:`SecretFileError` for an unreadable file: starting without a credential would only
    fail later, with a less helpful error.
    """
    env = os.environ if environ is None else environ
    loaded = []
    for var, path in sorted(env.items()):
        match = _FILE_VAR.match(var)
        if not match or not path:
            continue
        name = match.group(1)
        if env.get(name):
            continue
        try:
            with open(path, encoding="utf-8") as fh:
                value = fh.read()
        except OSError as exc:
            raise SecretFileError(f"{var}={path}: cannot read the secret file: {exc.strerror}") from exc
        if value.endswith("\r\n"):
            value = value[:-2]
        elif value.endswith("\n"):
            value = value[:-1]
        env[name] = value
        loaded.append(name)
    return loaded


# --------------------------------------------------------------------------- JSON logging

# Attributes every LogRecord has; anything else on a record came from `extra=` and is emitted.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, service, plus any ``extra`` fields."""

    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self.service = service if service is not None else os.environ.get("HAYSTACK_SERVICE", "")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.service:
            entry["service"] = self.service
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def logging_config(level: str = "INFO", fmt: str = "json") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` mapping: everything to stdout, JSON unless ``fmt='text'``.

    uvicorn's own access log is silenced: :class:`PrometheusMiddleware` writes one structured
    access record per request instead (logger ``haystack_observability.access``).
    """
    level = level.upper()
    if fmt == "json":
        formatter: dict[str, Any] = {"()": f"{__name__}.JsonFormatter"}
    else:
        formatter = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "stdout": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stdout"},
        },
        "root": {"level": level, "handlers": ["stdout"]},
        "loggers": {
            # uvicorn attaches its own handlers unless told otherwise: route everything to ours.
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
        },
    }


def configure_logging(level: str | None = None, fmt: str | None = None) -> None:
    """Apply :func:`logging_config` with ``LOG_LEVEL`` / ``HAYSTACK_LOG_FORMAT`` as defaults."""
    level = level or os.environ.get("LOG_LEVEL", "INFO")
    fmt = fmt or os.environ.get("HAYSTACK_LOG_FORMAT", "json")
    logging.config.dictConfig(logging_config(level, fmt))


# --------------------------------------------------------------------------- metrics

def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: Sequence[str]) -> tuple[str, ...]:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple(str(v) for v in labels)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.labelnames, k)} {_number(v)}" for k, v in items]


class Gauge(Counter):
    kind = "gauge"

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, *labels: str, amount: float = 1.0) -> None:
        self.inc(*labels, amount=-amount)

    def set(self, *labels: str, value: float) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = value


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = (),
                 buckets: Iterable[float] = DEFAULT_BUCKETS) -> None:
        super().__init__(name, help_text, labelnames)
        self.buckets = tuple(sorted(float(b) for b in buckets if not math.isinf(b))) + (math.inf,)
        # per label set: [count per bucket (non-cumulative)], sum
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, value: float, *labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            counts, total = self._series.setdefault(key, ([0] * len(self.buckets), [0.0]))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
                    break
            total[0] += value

    def count(self, *labels: str) -> int:
        series = self._series.get(self._key(labels))
        return sum(series[0]) if series else 0

    def samples(self) -> list[str]:
        lines = []
        with self._lock:
            items = sorted((k, (list(c), t[0])) for k, (c, t) in self._series.items())
        for key, (counts, total) in items:
            cumulative = 0
            for bound, n in zip(self.buckets, counts):
                cumulative += n
                le = f'le="{_number(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(self.labelnames, key, le)} {cumulative}")
            lines.append(f"{self.name}_sum{_labels(self.labelnames, key)} {_number(total)}")
            lines.append(f"{self.name}_count{_labels(self.labelnames, key)} {cumulative}")
        return lines


class MetricsRegistry:
    """The metrics one application exposes, rendered in the Prometheus text format."""

    def __init__(self, buckets: Iterable[float] = DEFAULT_BUCKETS) -> None:
        self.requests = Counter(
            "http_requests_total", "HTTP requests handled, by method, route template and status code.",
            ("method", "path", "status"))
        self.duration = Histogram(
            "http_request_duration_seconds", "Time from request start to the end of the response body.",
            ("method", "path"), buckets)
        self.in_progress = Gauge(
            "http_requests_in_progress", "HTTP requests currently being handled.", ("method",))
        self.start_time = Gauge("process_start_time_seconds", "Start time of the process since the Unix epoch.")
        self.start_time.set(value=time.time())
        self._metrics: list[_Metric] = [self.requests, self.duration, self.in_progress, self.start_time]

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics:
            lines += metric.header()
            lines += metric.samples()
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- ASGI middleware

def _route_path(scope: Scope, status: int) -> str:
    """The route template (``/files/{file_id}``), so the path label stays low-cardinality."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if isinstance(template, str) and template:
        return template
    if status == 404:
        return UNMATCHED_PATH
    return scope.get("path", "") or "/"


class PrometheusMiddleware:
    """Pure ASGI middleware: serves ``GET <metrics_path>`` and measures every other HTTP request.

    Starlette/FastAPI put the matched route into the scope, which is read after the application ran,
    so paths are labelled by their template.  Requests that match no route are labelled
    ``<unmatched>`` to keep scanners from creating a series per URL.
    """

    def __init__(self, app: ASGIApp, *, registry: MetricsRegistry | None = None,
                 metrics_path: str = "/metrics", quiet_paths: Iterable[str] = ("/health", "/metrics")) -> None:
        self.app = app
        self.registry = registry if registry is not None else MetricsRegistry()
        self.metrics_path = metrics_path
        self.quiet_paths = frozenset(quiet_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        if scope.get("path") == self.metrics_path and method in ("GET", "HEAD"):
            await self._serve_metrics(send, head=method == "HEAD")
            return

        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.registry.in_progress.inc(method)
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            status = 500
            raise
        finally:
            elapsed = time.perf_counter() - started
            self.registry.in_progress.dec(method)
            path = _route_path(scope, status)
            self.registry.requests.inc(method, path, str(status))
            self.registry.duration.observe(elapsed, method, path)
            if scope.get("path") not in self.quiet_paths or status >= 400:
                access_log.info(
                    "%s %s %d", method, scope.get("path", ""), status,
                    extra={"http_method": method, "http_path": scope.get("path", ""), "http_route": path,
                           "http_status": status, "duration_ms": round(elapsed * 1000, 3),
                           "client": (scope.get("client") or ("", 0))[0]},
                )

    async def _serve_metrics(self, send: Send, *, head: bool) -> None:
        body = self.registry.render().encode("utf-8")
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", CONTENT_TYPE.encode()), (b"content-length", str(len(body)).encode())],
        })
        await send({"type": "http.response.body", "body": b"" if head else body})


def wrap(app: ASGIApp, **kwargs: Any) -> PrometheusMiddleware:
    """``app`` with ``/metrics`` and request metrics; keyword arguments go to PrometheusMiddleware."""
    return PrometheusMiddleware(app, **kwargs)


# --------------------------------------------------------------------------- offline runtime settings

# The upstream services (deepset-ai/haystack-rag-app 70c49c0) hard-code their embedding model
# (intfloat/multilingual-e5-base, fetched from a model hub on first use), its dimension (768) and the
# generator's model name (gpt-4o, at api.openai.com).  These variables change them from outside, so
# the images need no edit of the upstream sources; tests/test_app.py runs the real services with them.
PLACEHOLDER_API_KEY = "in-cluster-endpoint-needs-no-key"
_OVERRIDES = (  # (variable, module, dataclass, field): the upstream config dataclasses' defaults
    ("HAYSTACK_EMBEDDER_MODEL", "query.service", "QueryConfig", "embedder_model"),
    ("HAYSTACK_EMBEDDER_MODEL", "indexing.service", "IndexingConfig", "embedder_model"),
    ("HAYSTACK_LLM_MODEL", "query.service", "QueryConfig", "llm_name"),
)


def apply_runtime_settings(app_spec: str, environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Point the upstream app at what the cluster provides; call before importing the app.

    * ``OPENAI_BASE_URL`` (an in-cluster OpenAI-compatible server: vLLM, Ollama, TGI) without
      ``OPENAI_API_KEY``: the key is set to a placeholder, because the upstream settings refuse to
      start without one although such servers usually need none;
    * ``HAYSTACK_EMBEDDER_MODEL`` (a local path, e.g. the model the chart delivers to /models),
      ``HAYSTACK_EMBEDDING_DIM`` (its vector size, for the OpenSearch index) and ``HAYSTACK_LLM_MODEL``
      (the name the in-cluster server serves) replace the upstream's hard-coded defaults.

    Returns what was changed, for one log line.
    """
    env = os.environ if environ is None else environ
    changed: list[str] = []
    if env.get("OPENAI_BASE_URL") and not env.get("OPENAI_API_KEY"):
        env["OPENAI_API_KEY"] = PLACEHOLDER_API_KEY
        changed.append("OPENAI_API_KEY (placeholder: in-cluster endpoint)")
    package = app_spec.partition(":")[0].split(".")[0]
    for var, module_name, cls_name, field_name in _OVERRIDES:
        value = env.get(var)
        if value and module_name.split(".")[0] == package:
            _default(importlib.import_module(module_name), cls_name, field_name, value)
            changed.append(f"{cls_name}.{field_name}")
    dim = env.get("HAYSTACK_EMBEDDING_DIM")
    if dim:
        if not dim.isdigit():
            raise SystemExit(f"haystack_observability: HAYSTACK_EMBEDDING_DIM={dim!r} is not a number")
        store_module = importlib.import_module("common.document_store")
        original = store_module.OpenSearchDocumentStore

        def document_store(*args: Any, **kwargs: Any) -> Any:
            return original(*args, **{**kwargs, "embedding_dim": int(dim)})

        store_module.OpenSearchDocumentStore = document_store
        changed.append("embedding_dim")
    return changed


def _quiet_embedders() -> None:
    """Haystack's sentence-transformers embedders default to ``progress_bar=True``; make it False."""
    for module_name, cls_name in (
            ("haystack.components.embedders", "SentenceTransformersTextEmbedder"),
            ("haystack.components.embedders", "SentenceTransformersDocumentEmbedder")):
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # not a Haystack app: nothing to quiet
            return
        if hasattr(module, cls_name):
            _default(module, cls_name, "progress_bar", False)


def _default(module: Any, cls_name: str, field_name: str, value: Any) -> None:
    cls = getattr(module, cls_name)
    original = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault(field_name, value)
        original(self, *args, **kwargs)

    cls.__init__ = __init__


# --------------------------------------------------------------------------- entry point

def _import_app(spec: str) -> ASGIApp:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"haystack_observability: expected MODULE:ATTRIBUTE, got {spec!r}")
    module = importlib.import_module(module_name)
    app = module
    for part in attr.split("."):
        app = getattr(app, part)
    return app  # type: ignore[return-value]


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="python -m haystack_observability",
                                     description="Run an ASGI app with JSON logs and Prometheus metrics.")
    parser.add_argument("app", nargs="?", default=env.get("HAYSTACK_APP"),
                        help="MODULE:ATTRIBUTE of the ASGI app (default: $HAYSTACK_APP)")
    parser.add_argument("--host", default=env.get("HAYSTACK_HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(env.get("HAYSTACK_PORT", "8000")))
    parser.add_argument("--no-metrics", action="store_true",
                        default=env.get("HAYSTACK_METRICS_ENABLED", "true").lower() == "false",
                        help="do not serve /metrics (default: $HAYSTACK_METRICS_ENABLED=false)")
    args = parser.parse_args(argv)
    if not args.app:
        parser.error("name the application (MODULE:ATTRIBUTE) or set HAYSTACK_APP")

    loaded = load_secret_files()          # before the app reads its settings at import time
    if env.get("HAYSTACK_LOG_FORMAT", "json") != "text":
        # Progress bars (tqdm: model loading, embedding batches) are not log records: on stderr they
        # would break the one-JSON-object-per-line stream the log shippers parse.
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        _quiet_embedders()  # they pass tqdm an explicit disable=False, which TQDM_DISABLE cannot override
    configure_logging()
    if loaded:
        log.info("secrets read from files", extra={"variables": loaded})
    sys.path.insert(0, os.getcwd())
    changed = apply_runtime_settings(args.app)
    if changed:
        log.info("runtime settings applied", extra={"changed": changed})
    app = _import_app(args.app)
    if not args.no_metrics:
        app = wrap(app)

    import uvicorn  # present in the application images; not needed to import this module

    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
