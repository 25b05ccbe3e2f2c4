"""Registry auth challenges (RFC 7235 ``WWW-Authenticate``) and Docker/OCI bearer tokens.

The scheme is matched case-insensitively: Nexus answers ``BASIC realm=...`` in upper case, Harbor and
Distribution ``Bearer realm=...,service=...,scope=...``. Once a registry has told us its scheme, later
requests carry credentials up front, so a load of many repositories does not pay a 401 round trip
for each of them.

Credentials depend on the repository a request's scope names (auth-file keys per namespace,
:class:`~airgap.registry.credentials.RepositoryCredentials`), and tokens are cached per
(credentials, scope). A scope naming two repositories (a cross-repository mount) is served only when
both resolve to the same credentials: one identity's token must never cover another's repository.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from airgap.errors import AuthError
from airgap.registry.credentials import Credentials, CredentialSource, RepositoryCredentials, StaticSource

_PARAM_RE = re.compile(r'([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower-cased
    params: dict[str, str] = field(default_factory=dict)


def parse_challenge(header: str) -> Challenge:
    header = header.strip()
    scheme, _, rest = header.partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).replace('\\"', '"')
              for m in _PARAM_RE.finditer(rest)}
    return Challenge(scheme.lower(), params)


def scope_repositories(scope: str) -> list[str]:
    """The repositories a scope names, in order (``repository:<name>:<actions>`` parts)."""
    repos = []
    for part in scope.split():
        kind, _, rest = part.partition(":")
        if kind == "repository" and ":" in rest:
            repos.append(rest.rpartition(":")[0])
    return repos


def _merge_scopes(*scopes: str) -> str:
    seen: list[str] = []
    for s in scopes:
        for part in (s or "").split():
            if part not in seen:
                seen.append(part)
    return " ".join(seen)


class Authenticator:
    """Holds what one registry asked for and the tokens it gave, per (credentials, scope)."""

    def __init__(self, host: str, credentials: Credentials | CredentialSource | RepositoryCredentials | None,
                 http: httpx.Client, may_send_credentials: Callable[..., None]):
        self.host = host
        # Either one source for every repository (flags' credentials, ECR, a test's), or one per
        # repository as the auth files key them.
        self._per_repository: RepositoryCredentials | None = None
        self._fixed: CredentialSource | None = None
        if isinstance(credentials, RepositoryCredentials):
            self._per_repository = credentials
        else:
            self._fixed = credentials if isinstance(credentials, CredentialSource) else StaticSource(credentials)
        self._http = http
        self._check_transport = may_send_credentials  # raises when creds would travel in clear text
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[Credentials | None, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    @property
    def source(self) -> CredentialSource:
        """The host's own source, for registry-wide requests (``/v2/``, a product's API)."""
        return self.source_for("")

    @source.setter
    def source(self, value: CredentialSource) -> None:
        # A target kind that brings its own credentials (ECR's token) for every repository.
        self._fixed, self._per_repository = value, None
        with self._lock:
            self._tokens.clear()

    @property
    def credentials(self) -> Credentials | None:
        return self.source.get()

    def source_for(self, scope: str) -> CredentialSource:
        """The source for the repositories ``scope`` names (the host's own for none). Raises AuthError
        when they resolve to different credentials: no single token may carry two identities."""
        if self._fixed is not None:
            return self._fixed
        assert self._per_repository is not None
        repos = scope_repositories(scope) or [""]
        first = self._per_repository.source(repos[0])
        for repo in repos[1:]:
            other = self._per_repository.source(repo)
            # Only a mount names a second repository (its from=). Asking with the target's identity for
            # pull on the source would use one account's token for another's repository (or a 403 that
            # reads like bad credentials); refusing here, before any request, makes the copy engine
            # treat it as any refused mount and upload the blob with the target's own credentials.
            if other.get() != first.get():
                raise AuthError(f"registry {self.host}: {repo} and {repos[0]} use different credentials "
                                f"({other.describe() or 'none'}; {first.describe() or 'none'}): not asking "
                                "for one token over both")
        return first

    def renew(self, resp: httpx.Response, scope: str = "") -> bool:
        """The registry refused credentials we sent (ECR: 'Your authorization token has expired'):
        True when the source has newer ones and the request is worth retrying."""
        source = self.source_for(scope)
        old = source.get()
        if old is None:
            return False
        if resp.status_code == 403:
            # ECR answers an expired token with 403 DENIED "...token has expired"; other 403s are real
            # permission errors. A HEAD answer has no body to tell: worth one renewal as well.
            try:
                body = resp.read().decode(errors="replace").lower()
            except httpx.HTTPError:
                return False
            if "expired" not in body and not (resp.request.method == "HEAD" and not body.strip()):
                return False
        if source.renew(old) is None:
            return False
        with self._lock:
            self._tokens.clear()  # bearer tokens obtained with the old credentials
        return True

    def header_for(self, scope: str) -> str | None:
        # Before the first challenge too: a scope over two identities fails before any request.
        source = self.source_for(scope)
        ch = self._challenge
        if ch is None:
            return None
        creds = source.get()
        if ch.scheme == "basic":
            return creds.basic_header() if creds else None
        if ch.scheme == "bearer":
            with self._lock:
                tok = self._tokens.get((creds, scope))
                if tok and tok[1] > time.monotonic():
                    return f"Bearer {tok[0]}"
            return f"Bearer {self._fetch_token(scope, source)}"
        return None

    def on_challenge(self, header: str | None, scope: str, had_auth: bool) -> bool:
        """Learn from a 401; True when retrying the request with new credentials can help."""
        if not header:
            return False
        ch = parse_challenge(header)
        if ch.scheme not in ("basic", "bearer"):
            raise AuthError(f"registry {self.host} asks for unsupported auth scheme {ch.scheme!r}")
        first = self._challenge is None or self._challenge.scheme != ch.scheme
        self._challenge = ch
        creds = self.source_for(scope).get()
        if ch.scheme == "basic":
            if creds is None or had_auth:
                return False
            self._check_transport()
            return True
        with self._lock:
            # A 401 carrying our token means it expired or lacks a scope: drop it and ask again.
            self._tokens.pop((creds, scope), None)
        return first or not had_auth or bool(ch.params.get("scope"))

    def _fetch_token(self, scope: str, source: CredentialSource) -> str:
        ch = self._challenge
        assert ch is not None
        realm = ch.params.get("realm")
        if not realm:
            raise AuthError(f"registry {self.host} sent a Bearer challenge without a realm")
        full_scope = _merge_scopes(scope)
        query: list[tuple[str, str]] = []
        if ch.params.get("service"):
            query.append(("service", ch.params["service"]))
        for part in full_scope.split():
            query.append(("scope", part))
        headers = {}
        creds = source.get()
        try:
            if creds and creds.identity_token:
                # docker login's OAuth refresh token: exchanged with a POST, as docker does
                # (distribution token spec, "OAuth2 token authentication").
                self._check_transport(realm)
                form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                        "client_id": "airgap", "access_type": "offline"}
                if ch.params.get("service"):
                    form["service"] = ch.params["service"]
                if full_scope:
                    form["scope"] = full_scope
                resp = self._http.post(realm, data=form)
            else:
                if creds:
                    self._check_transport(realm)
                    headers["Authorization"] = creds.basic_header()
                resp = self._http.get(realm, params=tuple(query), headers=headers)
        except httpx.HTTPError as exc:
            raise AuthError(f"cannot reach token service {realm} of registry {self.host}: {exc}") from None
        if resp.status_code in (401, 403):
            who = f"as {creds.username!r}" if creds and creds.username else (
                "with an identity token" if creds else "anonymously")
            where = source.describe()
            looked = f" (credentials looked for in: {where})" if where and not creds else (
                f" (credentials from {where})" if where else "")
            raise AuthError(f"registry {self.host} refused a token {who} for {full_scope or 'registry'}: "
                            f"{_error_text(resp)}{looked}")
        if resp.status_code != 200:
            raise AuthError(f"token service {realm} of registry {self.host} answered HTTP {resp.status_code}")
        try:
            doc = resp.json()
        except ValueError:
            raise AuthError(f"token service {realm} of registry {self.host} did not return JSON") from None
        token = doc.get("token") or doc.get("access_token")
        if not token:
            raise AuthError(f"token service {realm} of registry {self.host} returned no token")
        # Renew a little early; the spec's default lifetime is 60 s.
        try:
            ttl = max(int(doc.get("expires_in") or 60) - 10, 5)
        except (TypeError, ValueError):
            ttl = 50  # the spec's default lifetime, less the same margin
        with self._lock:
            self._tokens[(creds, scope)] = (token, time.monotonic() + ttl)
        return token


def _error_text(resp: httpx.Response) -> str:
    """The registry's own words from an OCI error body, else the status line."""
    try:
        doc = resp.json()
        errs = doc.get("errors") or []
        msgs = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errs if isinstance(e, dict)]
        if msgs:
            return "; ".join(msgs)
        if doc.get("details") or doc.get("message"):
            return str(doc.get("details") or doc.get("message"))
    except (ValueError, AttributeError):
        pass
    text = resp.text.strip().splitlines()[0][:200] if resp.text.strip() else ""
    return f"HTTP {resp.status_code} {resp.reason_phrase}" + (f" ({text})" if text else "")


def error_text(resp: httpx.Response) -> str:
    return _error_text(resp)
