"""One HTTP client per registry: TLS, auth, redirects, retries, and errors that name the registry.

Retry policy (``RegistryOptions.retries`` attempts): 408, 429 and 5xx answers and dropped connections
are retried with exponential backoff, honouring ``Retry-After``. Requests whose body is a stream are
not retried here; they raise :class:`Transient` and the copy engine retries the whole blob from a
fresh stream. A rate limit whose wait is longer than a retry is worth (Docker Hub's pull limit) is
reported at once, with the wait.

Redirects are followed here, on every kind of request (distribution-spec allows a registry to
redirect any of them; registry.k8s.io redirects manifests, Docker Hub and Quay send blobs to a CDN).
``Authorization`` goes only to the registry's own origin, never to a host a redirect points at; a
loop, or a redirect from HTTPS down to plain HTTP, is an error naming both hosts.

The registry name is mapped to its API host in one place (:func:`airgap.model.reference.api_host`):
``docker.io`` is answered by ``registry-1.docker.io``. Loopback registries without a flag get TLS
first, then plain HTTP when the port does not speak TLS (as docker and crane do), and the client says
which. With ``-v`` every HTTP request is logged as one line on the ``airgap.http`` logger.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import re
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from airgap import limits
from airgap.model.reference import HOST_RE, api_host, canonical_registry
from airgap.errors import AuthError, InputError, NotFound, RateLimited, RegistryError, Transient
from airgap.model.filebody import FileBody
from airgap.registry import credentials as creds
from airgap.registry import sendfile
from airgap.registry.auth import Authenticator, error_text, scope_repositories

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = limits.MAX_REDIRECTS
MAX_RETRY_WAIT = limits.MAX_RETRY_WAIT
USER_AGENT = "airgap/0.1"
http_log = logging.getLogger("airgap.http")
log = logging.getLogger("airgap.registry")
# Query parameters safe to show in a log line; anything else (CDN signatures, upload state) is masked.
_SAFE_QUERY = frozenset({"scope", "service", "n", "last", "digest", "mount", "from", "artifactType", "ns"})


@dataclass(frozen=True)
class RegistryOptions:
    insecure: bool = False             # plain HTTP instead of HTTPS
    tls_only: bool = False             # the user wrote https://: no plain-HTTP fallback, even on loopback
    ca_file: Path | None = None        # extra CA bundle for a private PKI
    username: str | None = None
    password: str | None = None
    allow_insecure_auth: bool = False  # send credentials over plain HTTP to a non-loopback host
    retries: int = limits.HTTP_RETRIES
    backoff: float = limits.RETRY_BACKOFF  # first retry delay, doubled each time, capped
    connections: int = limits.CONNECTIONS
    timeout: float = limits.HTTP_TIMEOUT  # per read/write; large layers stream for far longer in total
    # The one host username/password belong to (the command's target registry). None: whichever host
    # the options are given to (one client per options object). Other hosts get only their auth files.
    credentials_for: str | None = None
    credentials_from: str = "--username/--password-stdin"  # where they came from, for messages

    def explicit_for(self, host: str) -> creds.Credentials | None:
        """The explicit credentials if they belong to ``host``, else None."""
        if not (self.username and self.password):
            return None
        if self.credentials_for is not None and canonical_registry(self.credentials_for) != canonical_registry(host):
            return None
        return creds.Credentials(self.username, self.password)

    def __repr__(self) -> str:  # the password must never reach a log line
        return f"RegistryOptions(insecure={self.insecure}, ca_file={self.ca_file}, username={self.username!r})"


@dataclass(frozen=True)
class Target:
    """``HOST[:PORT][/PREFIX]`` as a user writes it on the command line."""

    host: str
    prefix: str = ""
    scheme: str | None = None  # "http" or "https" when the user wrote one: honoured, never dropped

    @classmethod
    def parse(cls, text: str) -> Target:
        raw = text.strip()
        scheme = None
        for prefix in ("https://", "http://", "oci://", "docker://"):
            if raw.startswith(prefix):
                raw = raw[len(prefix):]
                if prefix in ("https://", "http://"):
                    scheme = prefix[:-3]
        host, _, prefix = raw.partition("/")
        prefix = prefix.strip("/")
        if "@" in raw:
            raise InputError(f"bad registry {_redact(text)!r}: give credentials with --username/--password-stdin "
                             "or docker login, never inside the registry address")
        if not HOST_RE.match(host):
            raise InputError(f"bad registry {text!r}: expected HOST[:PORT][/PREFIX], e.g. harbor.example.com/haystack")
        from airgap.model.reference import valid_repository
        if prefix and not valid_repository(prefix):
            raise InputError(f"bad registry prefix {prefix!r} in {text!r}: lower-case letters, digits, . _ - and /")
        return cls(host, prefix, scheme)

    def options(self, base: RegistryOptions) -> RegistryOptions:
        """``base`` adjusted to the scheme the user wrote, refusing contradictions."""
        from dataclasses import replace
        if self.scheme == "http":
            return replace(base, insecure=True)
        if self.scheme == "https":
            if base.insecure:
                raise InputError(f"registry https://{self} contradicts --insecure-registry (plain HTTP): "
                                 "drop one of them")
            return replace(base, tls_only=True)
        return base

    def repository(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def __str__(self) -> str:
        return f"{self.host}/{self.prefix}" if self.prefix else self.host


def _redact(text: str) -> str:
    """An address with any userinfo blanked, for messages."""
    return re.sub(r"[^/@]*@", "***@", text, count=1)


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class _TlsOnDemand(httpx.BaseTransport):
    """The transport of a plain-HTTP registry: building a verifying TLS context parses the whole CA
    bundle (tens of milliseconds of every command's start), so it is built only when a request goes to
    HTTPS after all (a redirect to a blob store), verifying exactly as the client's default would."""

    def __init__(self, verify: ssl.SSLContext | bool, pool: httpx.Limits):
        self._verify, self._pool = verify, pool
        self._plain = httpx.HTTPTransport(verify=False, limits=pool)  # never wraps a socket in TLS
        self._tls: httpx.HTTPTransport | None = None
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "https":
            if isinstance(request.stream, sendfile.FileBodyStream):
                return sendfile.send(request, request.stream)  # a bundle's bytes, sent by the kernel
            if sendfile.is_blob_download(request):
                return sendfile.fetch(request)  # read straight into whole chunks
            return self._plain.handle_request(request)
        with self._lock:
            if self._tls is None:
                self._tls = httpx.HTTPTransport(verify=self._verify, limits=self._pool)
        return self._tls.handle_request(request)

    def close(self) -> None:
        self._plain.close()
        if self._tls is not None:
            self._tls.close()


class RegistryClient:
    def __init__(self, host: str, options: RegistryOptions | None = None,
                 transport: httpx.BaseTransport | None = None,
                 credentials: creds.CredentialSource | None = None, api_root: str = ""):
        """``credentials``: one source for every repository (a target kind's, a test's); without it
        each repository gets what the explicit credentials or the auth files hold for it."""
        self.host = host  # the registry's name, as messages and place keys show it
        self.api_host = api_host(host)  # where its API answers (docker.io -> registry-1.docker.io)
        self.options = options or RegistryOptions()
        # Nexus serves each hosted repository's API under /repository/<repo>/v2/ as well as with
        # path-based routing; api_root "/repository/<repo>" maps "<repo>/<name>" onto that endpoint.
        self.api_root = api_root.rstrip("/")
        scheme = "http" if self.options.insecure else "https"
        self._base = f"{scheme}://{self.api_host}"
        # Loopback without a flag: TLS first, plain HTTP if the port does not speak TLS (docker, crane).
        self._scheme_open = (not self.options.insecure and not self.options.tls_only and is_loopback(self.api_host)
                             and transport is None)
        verify: ssl.SSLContext | bool = True
        if self.options.ca_file:
            if not Path(self.options.ca_file).is_file():
                raise InputError(f"CA file {self.options.ca_file} does not exist")
            try:
                verify = ssl.create_default_context(cafile=str(self.options.ca_file))
            except ssl.SSLError:
                raise InputError(f"CA file {self.options.ca_file} is not a PEM certificate bundle") from None
        self._started: dict[int, float] = {}
        pool = httpx.Limits(max_connections=self.options.connections,
                            max_keepalive_connections=self.options.connections)
        # Small requests (bodies in memory, answers read whole) go over http.client (airgap/registry/lean.py):
        # a third of the CPU of a load of small images was httpx's per-request layers.
        from airgap.registry.lean import LeanHTTP, proxied_environment
        self._lean = (LeanHTTP(verify, 30.0, self.options.timeout, self.options.connections, {"User-Agent": USER_AGENT,
                                                                                             "Accept": "*/*"})
                      if transport is None and not proxied_environment() else None)
        if transport is None and self.options.insecure:
            transport = _TlsOnDemand(verify, pool)
        self._origin_of: tuple[str, tuple[str, str, int | None]] = ("", ("", "", None))
        self.http = httpx.Client(
            verify=verify,
            timeout=httpx.Timeout(self.options.timeout, connect=30.0),
            limits=pool,
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,  # followed in _send, which decides where Authorization may go
            transport=transport,  # tests swap in httpx.MockTransport for protocol edge cases
            event_hooks={"request": [self._log_request], "response": [self._log_response]},
        )
        per_repository = None
        if credentials is None:
            per_repository = creds.RepositoryCredentials(host, self.options.explicit_for(host),
                                                         self.options.credentials_from)
            per_repository.source()  # a malformed auth file is reported now, before any transfer
        self.auth = Authenticator(host, credentials if credentials is not None else per_repository, self.http,
                                  self._check_credentials_transport)

    @property
    def base(self) -> str:
        """``scheme://api-host`` of the registry (settles TLS-or-HTTP for a loopback registry first)."""
        if self._scheme_open:
            self._settle_scheme()
        return self._base

    def _settle_scheme(self) -> None:
        self._scheme_open = False
        try:
            self.http.get(self._base + "/v2/", timeout=limits.PROBE_TIMEOUT).close()
            return
        except httpx.TransportError as exc:
            text = str(exc)
            if "CERTIFICATE_VERIFY_FAILED" in text or not _tls_refused(exc):
                return  # it speaks TLS (with a certificate to fix), or nothing listens: the request will say
        self._base = f"http://{self.api_host}"
        log.warning("registry %s does not speak TLS; using plain HTTP (loopback registries only)", self.host)

    def close(self) -> None:
        self.http.close()
        if self._lean is not None:
            self._lean.close()

    # -- -v: one line per request ----------------------------------------------------------------
    def _log_request(self, request: httpx.Request) -> None:
        if http_log.isEnabledFor(logging.DEBUG):
            self._started[id(request)] = time.monotonic()

    def _log_response(self, response: httpx.Response) -> None:
        if not http_log.isEnabledFor(logging.DEBUG):
            return
        t0 = self._started.pop(id(response.request), None)
        ms = f" {1000 * (time.monotonic() - t0):.0f} ms" if t0 is not None else ""
        http_log.debug("%s %s %d%s", response.request.method, redact_url(response.request.url),
                       response.status_code, ms)

    def _check_credentials_transport(self, url: str | None = None) -> None:
        """Credentials go in clear text only to loopback, or when the user said the network is trusted.
        ``url`` is where they would go when that is not the registry itself (a token service)."""
        if self.options.allow_insecure_auth:
            return
        if url is None:
            if self.options.insecure and not is_loopback(self.host):
                raise AuthError(f"registry {self.host} asks for credentials over plain HTTP; refusing to send them "
                                "in clear text (use TLS, or pass --allow-insecure-auth if this network is trusted)")
            return
        parsed = httpx.URL(url)
        if parsed.scheme != "https" and not is_loopback(parsed.netloc.decode()):
            raise AuthError(f"registry {self.host} sends clients to token service {parsed.scheme}://{parsed.host} "
                            "over plain HTTP; refusing to send credentials there in clear text (fix the realm, or "
                            "pass --allow-insecure-auth if this network is trusted)")

    def same_origin(self, url: str) -> bool:
        """Authorization goes only to the registry itself, never to a host its answers point at."""
        if "://" not in url:
            return True
        base = self.base
        if url.startswith(base) and url[len(base):len(base) + 1] in ("/", "?"):
            return True  # the authority ends where the base does: no parse (one per request)
        # Parsed once per base: a small image costs a dozen requests, each asking this.
        if self._origin_of[0] != self.base:
            self._origin_of = (self.base, _origin(httpx.URL(self.base)))
        return _origin(httpx.URL(url)) == self._origin_of[1]

    def repo_path(self, repository: str) -> str:
        """The URL path of a repository's API: ``/v2/<repository>``, or Nexus's per-repository
        endpoint ``/repository/<hosted>/v2/<rest>`` when the client was given that ``api_root``."""
        from airgap.model.reference import valid_repository
        if not valid_repository(repository):  # last line of defence; callers validate first (airgap.names)
            raise InputError(f"refusing to build a registry URL from repository {repository[:100]!r}: "
                             "not a valid repository name")
        if self.api_root:
            hosted = self.api_root.rsplit("/", 1)[-1]
            if repository.startswith(hosted + "/"):
                return f"{self.api_root}/v2/{repository[len(hosted) + 1:]}"
        return f"/v2/{repository}"

    def api_name(self, repository: str) -> str:
        """The repository name as the API endpoint knows it (for mount's ``from=``)."""
        return self.repo_path(repository).split("/v2/", 1)[1]

    # -- requests -------------------------------------------------------------------------------
    def _url(self, path_or_url: str) -> str:
        return path_or_url if "://" in path_or_url else self.base + path_or_url

    def request(self, method: str, path: str, *, scope: str, headers: dict[str, str] | None = None,
                content: bytes | None = None, params: dict[str, str] | None = None,
                ok: tuple[int, ...] = (200, 201, 202, 204), what: str = "") -> httpx.Response:
        """A request without a streamed body, retried, authenticated and redirected; raises on a
        non-``ok`` answer."""
        resp = self._send(method, self._url(path), scope=scope, headers=headers, content=content, params=params,
                          what=what or f"{method} {path}")
        if resp.status_code not in ok:
            self.raise_for(resp, what or f"{method} {path}", scope)
        return resp

    def api(self, method: str, path: str, *, json: object | None = None, params: dict[str, str] | None = None,
            ok: tuple[int, ...] = (200,), what: str = "") -> httpx.Response:
        """A registry product's own API (Harbor's /api/v2.0): Basic credentials up front, as its
        swagger declares, since these endpoints send no challenge to learn from."""
        headers: dict[str, str] = {}
        creds_now = self.auth.credentials
        if creds_now:
            self._check_credentials_transport()
            headers["Authorization"] = creds_now.basic_header()
        resp = self._send(method, self._url(path), scope="", headers=headers, json=json, params=params,
                          challenge=False, what=what or f"{method} {path}")
        if resp.status_code not in ok:
            self.raise_for(resp, what or f"{method} {path}")
        return resp

    @contextmanager
    def stream(self, path: str, *, scope: str, headers: dict[str, str] | None = None,
               what: str = "") -> Iterator[httpx.Response]:
        """GET with a streamed response body (redirects followed as for every request)."""
        resp = self._send("GET", self._url(path), scope=scope, headers=headers, stream=True,
                          what=what or f"GET {path}")
        try:
            if resp.status_code != 200:
                resp.read()
                self.raise_for(resp, what or f"GET {path}", scope)
            yield resp
        finally:
            resp.close()

    def _send(self, method: str, url: str, *, scope: str, headers: dict[str, str] | None = None,
              content: bytes | None = None, params: dict[str, str] | None = None, json: object | None = None,
              stream: bool = False, challenge: bool = True, what: str = "") -> httpx.Response:
        """One logical request: every hop of its redirects, each retried and authenticated on its own.
        Only hops to the registry's own origin carry Authorization (ours or the caller's)."""
        if params:
            url = str(httpx.URL(url).copy_merge_params(params))
        hops = [url]
        while True:
            own = self.same_origin(url)
            hop_headers = dict(headers or {})
            if not own:
                hop_headers = {k: v for k, v in hop_headers.items() if k.lower() != "authorization"}
            resp = self._send_hop(method, url, scope, hop_headers, content, json, stream,
                                  authenticate=own and challenge)
            location = resp.headers.get("location")
            if resp.status_code not in REDIRECT_STATUS or not location:
                return resp
            if method not in ("GET", "HEAD") and resp.status_code not in (307, 308):
                return resp  # a 301/302/303 answer to a write is not a redirect of that write
            resp.close()
            nxt = str(resp.url.join(location))
            here, there = httpx.URL(url), httpx.URL(nxt)
            if here.scheme == "https" and there.scheme != "https":
                raise RegistryError(f"registry {self.host}: {what} was redirected from HTTPS ({here.host}) to plain "
                                    f"HTTP ({there.host}); refusing to follow a downgrade")
            if nxt in hops:
                chain = " -> ".join(_host_port(u) for u in hops + [nxt])
                raise RegistryError(f"registry {self.host}: {what}: redirect loop ({chain})")
            hops.append(nxt)
            if len(hops) > MAX_REDIRECTS:
                chain = " -> ".join(_host_port(u) for u in hops)
                raise RegistryError(f"registry {self.host}: {what}: more than {MAX_REDIRECTS} redirects ({chain})")
            url = nxt

    def _send_hop(self, method: str, url: str, scope: str, headers: dict[str, str], content: bytes | None,
                  json: object | None, stream: bool, authenticate: bool) -> httpx.Response:
        attempt = 0
        auth_retried = False
        while True:
            h = dict(headers)
            had_auth = "authorization" in {k.lower() for k in h}
            if authenticate:
                auth_header = self.auth.header_for(scope)
                if auth_header:
                    h["Authorization"] = auth_header
                    had_auth = True
            try:
                resp = None
                # The cookie jar stays httpx's: while it holds a cookie (a load balancer's affinity),
                # requests go through httpx, which sends it.
                if self._lean is not None and not stream and json is None and not self.http.cookies:
                    resp = self._lean.send(method, url, h, content, self.http.event_hooks)
                    if resp is not None and "set-cookie" in resp.headers:
                        self.http.cookies.extract_cookies(resp)
                if resp is None:
                    req = self.http.build_request(method, url, headers=h, content=content, json=json)
                    resp = self.http.send(req, stream=stream)
            except httpx.TransportError as exc:
                if http_log.isEnabledFor(logging.DEBUG):
                    http_log.debug("%s %s failed: %s", method, redact_url(httpx.URL(url)), exc.__class__.__name__)
                attempt += 1
                if attempt >= self.options.retries:
                    raise self._transport_error(exc) from None
                self._sleep(attempt, None)
                continue
            if resp.status_code == 401 and not auth_retried and authenticate:
                header = resp.headers.get("www-authenticate")
                if self.auth.on_challenge(header, scope, had_auth) or (had_auth and self.auth.renew(resp, scope)):
                    resp.close()
                    auth_retried = True
                    continue
            if resp.status_code == 403 and had_auth and not auth_retried and authenticate and \
                    self.auth.renew(resp, scope):
                resp.close()
                auth_retried = True
                continue
            if resp.status_code == 429:
                self._check_rate_limit(resp, attempt + 1 < self.options.retries, scope)
            if resp.status_code in RETRY_STATUS and attempt + 1 < self.options.retries:
                attempt += 1
                retry_after = resp.headers.get("retry-after")
                resp.close()
                self._sleep(attempt, retry_after)
                continue
            return resp

    def _check_rate_limit(self, resp: httpx.Response, can_retry: bool, scope: str = "") -> None:
        """Raise RateLimited when waiting is not worth it: a wait beyond MAX_RETRY_WAIT, no wait given
        while the registry says the quota is spent (Docker Hub), or no retries left."""
        wait = _seconds(resp.headers.get("retry-after"))
        remaining = (resp.headers.get("ratelimit-remaining") or "").split(";")[0].strip()
        limit = resp.headers.get("ratelimit-limit") or ""
        try:
            resp.read()
        except httpx.HTTPError:
            pass
        codes = {str(e.get("code", "")).upper() for e in _errors(resp)}
        spent = remaining == "0" or "TOOMANYREQUESTS" in codes
        if can_retry and ((wait is not None and wait <= MAX_RETRY_WAIT) or (wait is None and not spent)):
            return
        window = _window(limit)
        if wait is not None:
            when = f"try again in {_duration(wait)}"
        elif window:
            when = f"the limit resets within {_duration(window)}"
        else:
            when = "try again later"
        quota = f" (limit {limit.split(';')[0]} per {_duration(window)})" if window else ""
        hint = " or log in (docker login) for a higher limit" if self.api_host == api_host("docker.io") and \
            self.auth.source_for(scope).get() is None else ""
        said = error_text(resp) if resp.content else ("pull rate limit reached" if spent else "HTTP 429")
        raise RateLimited(f"registry {self.host} rate-limits us{quota}: {said}; {when}{hint}")

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = min(self.options.backoff * (2 ** (attempt - 1)), limits.RETRY_BACKOFF_CAP)
        delay *= 0.8 + 0.4 * random.random()  # jitter: clients retrying together do not stay in step
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), MAX_RETRY_WAIT))
            except ValueError:
                pass  # an HTTP-date; our own backoff is good enough
        time.sleep(delay)

    def _transport_error(self, exc: httpx.TransportError) -> RegistryError:
        text = str(exc) or exc.__class__.__name__
        if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
            return RegistryError(f"TLS error talking to registry {self.host}: {text} "
                                 "(pass --ca-file with the registry's CA, or --insecure-registry for plain HTTP)")
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            return RegistryError(f"cannot reach registry {self.host}: {text}")
        return Transient(f"connection to registry {self.host} failed: {text}")

    def transport_error(self, exc: httpx.TransportError) -> RegistryError:
        return self._transport_error(exc)

    def upload(self, method: str, url: str, *, scope: str, headers: dict[str, str], body: Iterable[bytes],
               what: str) -> httpx.Response:
        """One request with a streamed body (a blob PATCH to an upload Location). Not retried here: the
        body is spent, so failures that are worth a retry raise Transient and the caller restarts the
        body. Credentials go only to the registry's own origin, never to storage a Location points at."""
        h = dict(headers)
        auth = self.auth.header_for(scope) if self.same_origin(url) else None
        if auth:
            h["Authorization"] = auth
        try:
            if isinstance(body, FileBody):
                # A byte range of a local file: a plain-HTTP transport sends it with sendfile.
                req = self.http.build_request(method, url, headers=h, content=body)
                req.stream = sendfile.FileBodyStream(body)
                resp = self.http.send(req)
            else:
                resp = self.http.request(method, url, headers=h, content=body)
        except httpx.TransportError as exc:
            raise Transient(f"registry {self.host}: {what} broke off: {exc}") from None
        if resp.status_code in (401, 403) and auth and self.auth.renew(resp, scope):
            # The token expired while we streamed (ECR, 12 h): a retry goes with the new one.
            raise Transient(f"registry {self.host}: {what}: credentials expired, renewed")
        return resp

    def raise_for(self, resp: httpx.Response, what: str, scope: str = "") -> None:
        """Raise the error for a failed answer; ``scope``, the one the request was sent with, tells
        whose credentials a 401/403 refused (none: the host's own)."""
        msg = error_text(resp)
        if resp.status_code in (401, 403):
            repos = scope_repositories(scope)
            # The first repository's: the one the request was for (a mount names its source second).
            source = self.auth.source_for(f"repository:{repos[0]}:pull" if repos else "")
            where, found = source.describe(), source.get()
            if found:
                name = found.username or "an identity token"
                who = f" as {name!r}" + (f" (credentials from {where})" if where else "")
            else:
                whom = f"{self.host}/{repos[0]}" if repos else "this host"
                who = f" (no credentials for {whom}" + (f"; looked in {where})" if where else ")")
            raise AuthError(f"registry {self.host} denied {what}{who}: {msg}")
        if resp.status_code == 404:
            raise NotFound(f"registry {self.host}: {what}: not found ({msg})")
        if resp.status_code == 400 and self.options.insecure and "HTTPS server" in resp.text:
            raise RegistryError(f"registry {self.host} speaks HTTPS, not plain HTTP: drop --insecure-registry "
                                "(and pass --ca-file if its certificate comes from a private CA)")
        if resp.status_code in RETRY_STATUS:
            raise Transient(f"registry {self.host}: {what}: {msg}")
        raise RegistryError(f"registry {self.host}: {what}: {msg}")


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    port = url.port or (443 if url.scheme == "https" else 80)
    return (url.scheme, url.host.lower(), port)


def _host_port(url: str) -> str:
    u = httpx.URL(url)
    return u.host + (f":{u.port}" if u.port else "")


def redact_url(url: httpx.URL) -> str:
    """A URL for a log line: no userinfo, and query values masked unless known to be harmless
    (CDN redirects carry signatures in the query)."""
    q = [(k, v if k in _SAFE_QUERY else "***") for k, v in url.params.multi_items()]
    clean = url.copy_with(username=None, password=None, query=None)
    if not q:
        return str(clean)
    return f"{clean}?" + "&".join(f"{k}={v}" for k, v in q)


def _tls_refused(exc: httpx.TransportError) -> bool:
    """The port answered, but not with TLS (a plain-HTTP server replied to our ClientHello)."""
    text = f"{exc} {exc.__cause__ or ''} {exc.__context__ or ''}".lower()
    return any(s in text for s in ("wrong version number", "record layer failure", "unexpected eof",
                                   "http request", "packet length too long", "unknown protocol", "ssl"))


def _seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value.strip()), 0.0)
    except ValueError:
        from email.utils import parsedate_to_datetime
        try:
            return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return None


def _window(limit: str) -> float | None:
    """The window of a ``RateLimit-Limit: 100;w=21600`` header (Docker Hub), in seconds."""
    for part in limit.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key == "w":
            return _seconds(value)
    return None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "a while"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h".replace(".0 h", " h")
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def _errors(resp: httpx.Response) -> list[dict]:
    try:
        errs = resp.json().get("errors") or []
    except (ValueError, AttributeError):
        return []
    return [e for e in errs if isinstance(e, dict)]
