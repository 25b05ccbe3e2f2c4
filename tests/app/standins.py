"""Stand-ins for the two servers the haystack-rag query path talks to that cannot run here.

OpenSearch (a JVM service, no package on PyPI/Debian that runs offline here) and an OpenAI-compatible
LLM server (vLLM/Ollama/TGI need a GPU or model weights we cannot fetch). Both listen on 127.0.0.1
only, record every request, and are as strict as the real servers on what the application sends:

:class:`OpenSearchStandIn` (HTTPS, like OpenSearch >= 2.12's security plugin, self-signed certificate)
  * every request needs HTTP Basic credentials equal to the configured user/password (401 otherwise,
    with OpenSearch's ``security_exception`` body);
  * ``HEAD /<index>`` 200/404; ``PUT /<index>`` creates it and refuses an existing one
    (``resource_already_exists_exception``, 400); the ``embedding`` field must be mapped as
    ``knn_vector`` with a ``dimension``, and ``index.knn`` must be on, as the k-NN plugin demands;
  * ``POST /_bulk`` / ``/<index>/_bulk`` (NDJSON): ``create`` of an existing id is a per-item 409
    ``version_conflict_engine_exception``; ``index``/``delete`` as OpenSearch does; an embedding whose
    length is not the mapped dimension is a per-item 400 ``mapper_parsing_exception``; an unknown index
    is ``index_not_found_exception`` (404);
  * ``POST /<index>/_search`` answers exactly the two query shapes the retrievers send: ``multi_match``
    (scored by shared terms, a stand-in for BM25) and ``knn`` (a query vector of the wrong dimension is
    a 400 like the k-NN plugin's; score ``1 / (1 + l2²)``, the default ``l2`` space), honouring
    ``size`` and ``_source.excludes``; any other query is a 400 ``parsing_exception``, so a change in
    what the app sends fails the test instead of silently matching;
  * ``GET /<index>/_count``.

:class:`OpenAIStandIn` (plain HTTP, like vLLM's ``--host 127.0.0.1`` default)
  * only ``POST /v1/chat/completions`` (what Haystack's OpenAIGenerator calls); a bearer token is
    required (``--api-key`` unset servers accept any, as the in-cluster ones do), ``model`` must be
    the one served (404 ``model_not_found`` otherwise, as vLLM answers), ``messages`` must be a list of
    ``{role, content}``; ``stream: true`` is refused (the app does not stream);
  * the answer quotes the context line that holds the question's key word, so a test can see that
    the retrieved document reached the prompt; the response is a complete ``chat.completion`` object
    (id, created, model, choices, usage), as the openai client validates it.
"""

from __future__ import annotations

import base64
import json
import math
import re
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class _Server:
    def __init__(self, handler: type, tls: tuple[Path, Path] | None = None):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.standin = self  # type: ignore[attr-defined]
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> "_Server":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet: the server records requests itself
        pass

    @property
    def standin(self) -> Any:
        return self.server.standin  # type: ignore[attr-defined]

    def body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def reply(self, status: int, doc: Any = None, *, head: bool = False) -> None:
        data = b"" if doc is None else json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)


def _error(kind: str, reason: str, status: int) -> dict:
    return {"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
            "status": status}


class _OpenSearchHandler(_Handler):
    def _dispatch(self, method: str) -> None:
        s: OpenSearchStandIn = self.standin
        path = self.path.split("?", 1)[0]
        body = self.body()
        with s.lock:
            s.requests.append({"method": method, "path": path})
        expected = "Basic " + base64.b64encode(f"{s.user}:{s.password}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            return self.reply(401, _error("security_exception", "Unauthorized", 401), head=method == "HEAD")
        parts = [p for p in path.split("/") if p]
        try:
            if method == "HEAD" and len(parts) == 1:
                return self.reply(200 if parts[0] in s.indices else 404, head=True)
            if method == "PUT" and len(parts) == 1:
                return self.reply(*s.create_index(parts[0], json.loads(body or b"{}")))
            if method in ("POST", "PUT") and parts[-1:] == ["_bulk"]:
                return self.reply(*s.bulk(parts[0] if len(parts) == 2 else None, body))
            if method in ("POST", "GET") and len(parts) == 2 and parts[1] == "_search":
                return self.reply(*s.search(parts[0], json.loads(body or b"{}")))
            if method in ("POST", "GET") and len(parts) == 2 and parts[1] == "_count":
                if parts[0] not in s.indices:
                    return self.reply(404, _error("index_not_found_exception", f"no such index [{parts[0]}]", 404))
                return self.reply(200, {"count": len(s.indices[parts[0]]["docs"])})
        except (ValueError, KeyError, TypeError) as exc:
            return self.reply(400, _error("parsing_exception", f"stand-in cannot parse the request: {exc}", 400))
        return self.reply(400, _error("illegal_argument_exception", f"{method} {path}: not served by the stand-in",
                                      400))

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")


class OpenSearchStandIn(_Server):
    def __init__(self, user: str, password: str, tls: tuple[Path, Path]):
        super().__init__(_OpenSearchHandler, tls)
        self.user, self.password = user, password
        self.indices: dict[str, dict] = {}

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def create_index(self, name: str, body: dict) -> tuple[int, dict]:
        if name in self.indices:
            return 400, _error("resource_already_exists_exception", f"index [{name}] already exists", 400)
        embedding = body["mappings"]["properties"]["embedding"]
        if embedding.get("type") != "knn_vector" or not isinstance(embedding.get("dimension"), int):
            return 400, _error("mapper_parsing_exception", "embedding must be a knn_vector with a dimension", 400)
        if str(body.get("settings", {}).get("index.knn")).lower() != "true":
            return 400, _error("illegal_argument_exception", "knn_vector needs index.knn: true", 400)
        self.indices[name] = {"dimension": embedding["dimension"], "docs": {}}
        return 200, {"acknowledged": True, "shards_acknowledged": True, "index": name}

    def bulk(self, default_index: str | None, body: bytes) -> tuple[int, dict]:
        lines = [json.loads(ln) for ln in body.decode().splitlines() if ln.strip()]
        items, errors, i = [], False, 0
        while i < len(lines):
            ((op, meta),) = lines[i].items()
            index = meta.get("_index") or default_index
            doc_id = meta["_id"]
            source = lines[i + 1] if op in ("create", "index") else None
            i += 2 if source is not None else 1
            result = self._bulk_item(op, index, doc_id, source)
            errors = errors or "error" in result
            items.append({op: result})
        return 200, {"took": 1, "errors": errors, "items": items}

    def _bulk_item(self, op: str, index: str | None, doc_id: str, source: dict | None) -> dict:
        base = {"_index": index, "_id": doc_id}
        if index not in self.indices:
            return {**base, "status": 404, "error": {"type": "index_not_found_exception",
                                                     "reason": f"no such index [{index}]"}}
        docs = self.indices[index]["docs"]
        if op == "delete":
            found = docs.pop(doc_id, None) is not None
            return {**base, "status": 200 if found else 404, "result": "deleted" if found else "not_found"}
        if op not in ("create", "index"):
            return {**base, "status": 400, "error": {"type": "illegal_argument_exception", "reason": f"op {op}"}}
        if op == "create" and doc_id in docs:
            return {**base, "status": 409, "error": {"type": "version_conflict_engine_exception",
                                                     "reason": f"[{doc_id}]: version conflict, document already exists"}}
        emb = (source or {}).get("embedding")
        dim = self.indices[index]["dimension"]
        if emb is not None and len(emb) != dim:
            return {**base, "status": 400, "error": {"type": "mapper_parsing_exception", "reason":
                                                     f"Vector dimension mismatch. Expected: {dim}, Given: {len(emb)}"}}
        docs[doc_id] = source
        return {**base, "status": 201, "result": "created"}

    def search(self, index: str, body: dict) -> tuple[int, dict]:
        if index not in self.indices:
            return 404, _error("index_not_found_exception", f"no such index [{index}]", 404)
        docs = self.indices[index]["docs"]
        must = body["query"]["bool"]["must"]
        clause = must[0] if isinstance(must, list) else must
        if set(body["query"]["bool"]) - {"must"}:
            raise ValueError("filters are not modelled by the stand-in")
        if "multi_match" in clause:
            terms = set(re.findall(r"\w+", clause["multi_match"]["query"].lower()))
            scored = [(float(len(terms & set(re.findall(r"\w+", (d.get("content") or "").lower())))), i, d)
                      for i, d in docs.items()]
            scored = [x for x in scored if x[0] > 0]
        elif "knn" in clause:
            q = clause["knn"]["embedding"]["vector"]
            dim = self.indices[index]["dimension"]
            if len(q) != dim:
                return 400, _error("illegal_argument_exception",
                                   f"Query vector has invalid dimension: {len(q)}. Dimension should be: {dim}", 400)
            scored = [(1.0 / (1.0 + sum((a - b) ** 2 for a, b in zip(q, d["embedding"]))), i, d)
                      for i, d in docs.items() if d.get("embedding")]
            scored = sorted(scored, key=lambda x: -x[0])[: int(clause["knn"]["embedding"]["k"])]
        else:
            raise ValueError(f"query {list(clause)} is not one the retrievers send")
        scored.sort(key=lambda x: -x[0])
        excludes = set((body.get("_source") or {}).get("excludes") or [])
        hits = [{"_index": index, "_id": i, "_score": score,
                 "_source": {k: v for k, v in d.items() if k not in excludes}}
                for score, i, d in scored[: int(body.get("size", 10))]]
        if any(math.isnan(h["_score"]) for h in hits):
            raise ValueError("NaN score")
        return 200, {"took": 1, "timed_out": False, "hits": {"total": {"value": len(hits), "relation": "eq"},
                                                             "max_score": hits[0]["_score"] if hits else None,
                                                             "hits": hits}}


class _OpenAIHandler(_Handler):
    def do_POST(self) -> None:
        s: OpenAIStandIn = self.standin
        body = self.body()
        if self.path.split("?", 1)[0] != "/v1/chat/completions":
            return self.reply(404, {"error": {"message": f"{self.path} not found", "type": "invalid_request_error"}})
        if not (self.headers.get("Authorization") or "").startswith("Bearer "):
            return self.reply(401, {"error": {"message": "missing bearer token", "type": "authentication_error"}})
        try:
            req = json.loads(body)
            model, messages = req["model"], req["messages"]
            if not isinstance(messages, list) or not all(isinstance(m, dict) and {"role", "content"} <= set(m)
                                                          for m in messages):
                raise ValueError("messages must be a list of {role, content}")
        except (ValueError, KeyError) as exc:
            return self.reply(400, {"error": {"message": str(exc), "type": "invalid_request_error"}})
        with s.lock:
            s.requests.append({"model": model, "messages": messages, "authorization": self.headers["Authorization"]})
        if model != s.model:
            return self.reply(404, {"error": {"message": f"The model `{model}` does not exist.",
                                              "type": "NotFoundError", "code": "model_not_found"}})
        if req.get("stream"):
            return self.reply(400, {"error": {"message": "stream is not served", "type": "invalid_request_error"}})
        prompt = str(messages[-1]["content"])
        answer = s.answer(prompt)
        self.reply(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop",
                         "logprobs": None}],
            "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(answer.split()),
                      "total_tokens": len(prompt.split()) + len(answer.split())},
        })


class OpenAIStandIn(_Server):
    def __init__(self, model: str):
        super().__init__(_OpenAIHandler)
        self.model = model

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @staticmethod
    def answer(prompt: str) -> str:
        question = prompt.rsplit("Question:", 1)[-1].split("Answer:", 1)[0]
        words = [w for w in re.findall(r"\w+", question.lower()) if len(w) > 4]
        context = prompt.split("Question:", 1)[0]
        for line in context.splitlines():
            if any(w in line.lower() for w in words):
                return f"From the context: {line.strip()}"
        return "The context does not say."
