"""One HTTP client per registry: TLS, auth, retries, and errors that name the registry.

Retry policy (``RegistryOptions.retries`` attempts): 408, 429 and 5xx answers and dropped connections
are retried with exponential backoff, honouring ``Retry-After``. Requests whose body is a stream are
not retried here; they raise :class:`Transient` and the copy engine retries the whole blob from a
fresh stream.
"""

from __future__ import annotations

import ipaddress
import random
import re
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from airgap.model.reference import HOST_RE
from airgap.errors import AuthError, InputError, NotFound, RegistryError
from airgap.registry import credentials as creds
from airgap.registry.auth import Authenticator, error_text

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
USER_AGENT = "airgap/0.1"


class Transient(RegistryError):
    """A failure worth retrying from the start (connection reset mid-upload, 5xx on a stream)."""


@dataclass(frozen=True)
class RegistryOptions:
    insecure: bool = False             # plain HTTP instead of HTTPS
    ca_file: Path | None = None        # extra CA bundle for a private PKI
    username: str | None = None
    password: str | None = None
    allow_insecure_auth: bool = False  # send credentials over plain HTTP to a non-loopback host
    retries: int = 5
    backoff: float = 0.5               # first retry delay, doubled each time, capped at 20 s
    connections: int = 16
    timeout: float = 300.0             # per read/write; large layers stream for far longer in total

    def __repr__(self) -> str:  # the password must never reach a log line
        return f"RegistryOptions(insecure={self.insecure}, ca_file={self.ca_file}, username={self.username!r})"


@dataclass(frozen=True)
class Target:
    """``HOST[:PORT][/PREFIX]`` as a user writes it on the command line."""

    host: str
    prefix: str = ""

    @classmethod
    def parse(cls, text: str) -> "Target":
        raw = text.strip()
        for scheme in ("https://", "http://", "oci://", "docker://"):
            if raw.startswith(scheme):
                raw = raw[len(scheme):]
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
        return cls(host, prefix)

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


class RegistryClient:
    def __init__(self, host: str, options: RegistryOptions | None = None,
                 transport: httpx.BaseTransport | None = None,
                 credentials: creds.CredentialSource | None = None, api_root: str = ""):
        self.host = host
        self.options = options or RegistryOptions()
        # Nexus serves each hosted repository's API under /repository/<repo>/v2/ as well as with
        # path-based routing; api_root "/repository/<repo>" maps "<repo>/<name>" onto that endpoint.
        self.api_root = api_root.rstrip("/")
        scheme = "http" if self.options.insecure else "https"
        self.base = f"{scheme}://{host}"
        verify: ssl.SSLContext | bool = True
        if self.options.ca_file:
            if not Path(self.options.ca_file).is_file():
                raise InputError(f"CA file {self.options.ca_file} does not exist")
            try:
                verify = ssl.create_default_context(cafile=str(self.options.ca_file))
            except ssl.SSLError:
                raise InputError(f"CA file {self.options.ca_file} is not a PEM certificate bundle") from None
        self.http = httpx.Client(
            verify=verify,
            timeout=httpx.Timeout(self.options.timeout, connect=30.0),
            limits=httpx.Limits(max_connections=self.options.connections,
                                max_keepalive_connections=self.options.connections),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
            transport=transport,  # tests swap in httpx.MockTransport for protocol edge cases
        )
        source = credentials or creds.StaticSource(
            creds.resolve(host, self.options.username, self.options.password))
        self.auth = Authenticator(host, source, self.http, self._check_credentials_transport)

    def close(self) -> None:
        self.http.close()

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
        return url.startswith(self.base + "/") or "://" not in url

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
        """A request without a streamed body, retried and authenticated; raises on a non-``ok`` answer."""
        resp = self._send(lambda h: self.http.request(method, self._url(path), headers=h, content=content,
                                                      params=params), scope, headers,
                          on_foreign=not self.same_origin(path))
        if resp.status_code not in ok:
            self.raise_for(resp, what or f"{method} {path}")
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
        resp = self._send(lambda h: self.http.request(method, self._url(path), headers={**h, **headers}, json=json,
                                                      params=params), "", None, on_foreign=True)
        if resp.status_code not in ok:
            self.raise_for(resp, what or f"{method} {path}")
        return resp

    @contextmanager
    def stream(self, path: str, *, scope: str, headers: dict[str, str] | None = None,
               what: str = "") -> Iterator[httpx.Response]:
        """GET with a streamed response body, following redirects (blob storage behind S3 etc.)."""
        url = self._url(path)
        for _ in range(5):
            req_headers = dict(headers or {})
            resp = self._send(lambda h: self.http.send(self.http.build_request("GET", url, headers=h), stream=True),
                              scope, req_headers, on_foreign=not url.startswith(self.base + "/"))
            if resp.status_code in (301, 302, 303, 307, 308) and "location" in resp.headers:
                resp.close()
                url = str(resp.url.join(resp.headers["location"]))
                continue
            try:
                if resp.status_code != 200:
                    resp.read()
                    self.raise_for(resp, what or f"GET {path}")
                yield resp
            finally:
                resp.close()
            return
        raise RegistryError(f"registry {self.host}: too many redirects for {what or path}")

    def _send(self, do: Callable[[dict[str, str]], httpx.Response], scope: str,
              headers: dict[str, str] | None, on_foreign: bool = False) -> httpx.Response:
        attempt = 0
        auth_retried = False
        while True:
            h = dict(headers or {})
            had_auth = False
            if not on_foreign:
                auth_header = self.auth.header_for(scope)
                if auth_header:
                    h["Authorization"] = auth_header
                    had_auth = True
            try:
                resp = do(h)
            except httpx.TransportError as exc:
                attempt += 1
                if attempt >= self.options.retries:
                    raise self._transport_error(exc) from None
                self._sleep(attempt, None)
                continue
            if resp.status_code == 401 and not auth_retried and not on_foreign:
                header = resp.headers.get("www-authenticate")
                if self.auth.on_challenge(header, scope, had_auth) or (had_auth and self.auth.renew(resp)):
                    resp.close()
                    auth_retried = True
                    continue
            if resp.status_code == 403 and had_auth and not auth_retried and self.auth.renew(resp):
                resp.close()
                auth_retried = True
                continue
            if resp.status_code in RETRY_STATUS and attempt + 1 < self.options.retries:
                attempt += 1
                retry_after = resp.headers.get("retry-after")
                resp.close()
                self._sleep(attempt, retry_after)
                continue
            return resp

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = min(self.options.backoff * (2 ** (attempt - 1)), 20.0) * (0.8 + 0.4 * random.random())
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), 60.0))
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

    def raise_for(self, resp: httpx.Response, what: str) -> None:
        msg = error_text(resp)
        if resp.status_code in (401, 403):
            who = f" as {self.auth.credentials.username!r}" if self.auth.credentials else " (no credentials found)"
            raise AuthError(f"registry {self.host} denied {what}{who}: {msg}")
        if resp.status_code == 404:
            raise NotFound(f"registry {self.host}: {what}: not found ({msg})")
        if resp.status_code == 400 and self.options.insecure and "HTTPS server" in resp.text:
            raise RegistryError(f"registry {self.host} speaks HTTPS, not plain HTTP: drop --insecure-registry "
                                "(and pass --ca-file if its certificate comes from a private CA)")
        if resp.status_code in RETRY_STATUS:
            raise Transient(f"registry {self.host}: {what}: {msg}")
        raise RegistryError(f"registry {self.host}: {what}: {msg}")
