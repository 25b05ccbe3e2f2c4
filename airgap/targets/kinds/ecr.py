"""Amazon ECR: credentials from the AWS credential chain, and repositories created before the push.

- Auth: ``ecr:GetAuthorizationToken`` returns base64 ``AWS:<password>`` valid 12 h; the registry
  takes it as Basic credentials. The call is limited to 20 TPS, so the token is cached, renewed ahead
  of ``expiresAt`` and when the registry says "Your authorization token has expired" mid-load.
- Every full repository path must exist (``CreateRepository``; ``RepositoryAlreadyExistsException``
  means someone was first, which is fine) unless a CREATE_ON_PUSH creation template covers it.
- boto3 is the optional extra ``airgap[ecr]``; it honours AWS_PROFILE, AWS_REGION,
  AWS_ENDPOINT_URL_ECR (VPC endpoints, emulators) and instance or pod roles as the AWS CLI does.
"""

from __future__ import annotations

import base64
import os
import re
import threading
import time
from datetime import datetime, timezone
from typing import Any

from airgap import limits
from airgap.errors import AuthError, InputError, RegistryError
from airgap.progress import Progress
from airgap.registry.client import RegistryClient, Target
from airgap.registry.credentials import Credentials, CredentialSource
from airgap.targets.base import OpenTarget, TargetKind

RENEW_BEFORE = limits.ECR_RENEW_BEFORE
FALLBACK_TTL = limits.ECR_FALLBACK_TTL
MIN_RENEW_INTERVAL = limits.ECR_MIN_RENEW_INTERVAL

# <account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn] (ECR "Private registry" docs)
ECR_HOST_RE = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)"
                         r"\.amazonaws\.com(?:\.cn)?(?::\d+)?$")


def ecr_host(host: str) -> re.Match[str] | None:
    return ECR_HOST_RE.match(host)


def _boto3() -> Any:
    try:
        import boto3
    except ImportError:
        raise InputError("loading into Amazon ECR needs boto3: pip install 'airgap[ecr]'") from None
    return boto3


def _aws_error(exc: Exception, action: str, host: str) -> Exception:
    name = exc.__class__.__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return AuthError(f"ECR registry {host}: no AWS credentials found for {action} "
                         "(set AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run with an instance role)")
    if name == "NoRegionError":
        return InputError(f"ECR registry {host}: no AWS region (set AWS_REGION or use the registry's host name)")
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "") if hasattr(exc, "response") else ""
    message = getattr(exc, "response", {}).get("Error", {}).get("Message", str(exc)) if code else str(exc)
    if code in ("AccessDeniedException", "UnrecognizedClientException", "ExpiredTokenException"):
        return AuthError(f"ECR registry {host}: {action} denied: {code}: {message}")
    return RegistryError(f"ECR registry {host}: {action} failed: {code + ': ' if code else ''}{message}")


class Ecr:
    """One ECR registry: its API client, account and region."""

    def __init__(self, host: str, region: str | None = None):
        self.host = host
        m = ecr_host(host)
        self.account = m.group("account") if m else None
        self.region = region or (m.group("region") if m else None) or os.environ.get("AWS_REGION") \
            or os.environ.get("AWS_DEFAULT_REGION")
        boto3 = _boto3()
        try:
            self.api = boto3.session.Session().client("ecr", region_name=self.region)
        except Exception as exc:  # botocore raises its own hierarchy; translate the known ones
            raise _aws_error(exc, "client setup", host) from None

    def _call(self, action: str, **kwargs: Any) -> dict:
        if self.account:
            kwargs.setdefault("registryId", self.account)
        try:
            return getattr(self.api, action)(**kwargs)
        except Exception as exc:
            if exc.__class__.__name__ == "RepositoryAlreadyExistsException":
                raise
            raise _aws_error(exc, action, self.host) from None

    def authorization_token(self) -> tuple[Credentials, float]:
        """(credentials, seconds they stay valid)."""
        try:
            resp = self.api.get_authorization_token(**({"registryIds": [self.account]} if self.account else {}))
        except Exception as exc:
            raise _aws_error(exc, "GetAuthorizationToken", self.host) from None
        data = resp["authorizationData"][0]
        user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        expires = data.get("expiresAt")
        ttl = FALLBACK_TTL
        if isinstance(expires, datetime):
            left = (expires - datetime.now(timezone.utc)).total_seconds() - RENEW_BEFORE
            if left > 0:
                ttl = left
        return Credentials(user, password), ttl

    def ensure_repositories(self, repositories: list[str], progress: Progress) -> list[str]:
        """Create every repository path; returns the ones created."""
        created = []
        for name in sorted(set(repositories)):
            try:
                self._call("create_repository", repositoryName=name)
            except Exception as exc:  # RepositoryAlreadyExistsException: already there, as we want
                if exc.__class__.__name__ != "RepositoryAlreadyExistsException":
                    raise
                continue
            created.append(name)
            progress.note(f"+ created ECR repository {name}")
        return created

    def tags_immutable(self, repository: str) -> bool | None:
        """imageTagMutability of an existing repository (IMMUTABLE or IMMUTABLE_WITH_EXCLUSION: True)."""
        try:
            repo = self._call("describe_repositories", repositoryNames=[repository])["repositories"][0]
        except Exception:  # missing repository, no DescribeRepositories permission: unknown
            return None
        return str(repo.get("imageTagMutability", "MUTABLE")).startswith("IMMUTABLE")

    def credential_source(self) -> EcrCredentials:
        return EcrCredentials(self)

    def repository_names(self, prefix: str) -> list[str]:
        """Every repository of the registry under ``prefix`` (DescribeRepositories, paged: ECR's data
        plane has no catalog)."""
        names: list[str] = []
        token = None
        while True:
            page = self._call("describe_repositories", maxResults=1000, **({"nextToken": token} if token else {}))
            names += [str(r["repositoryName"]) for r in page.get("repositories", [])]
            token = page.get("nextToken")
            if not token:
                break
        return [n for n in names if not prefix or n.startswith(prefix + "/")]


class EcrCredentials(CredentialSource):
    """Cached GetAuthorizationToken credentials, renewed before expiry and when the registry refuses them."""

    def __init__(self, ecr: Ecr):
        self._ecr = ecr
        self._lock = threading.Lock()
        self._creds: Credentials | None = None
        self._valid_until = 0.0
        self._renewed_at = -MIN_RENEW_INTERVAL
        self.fetches = 0

    def _fetch(self) -> Credentials:
        creds, ttl = self._ecr.authorization_token()
        now = time.monotonic()
        self._creds, self._valid_until = creds, now + ttl
        self.fetches += 1
        return creds

    def get(self) -> Credentials | None:
        with self._lock:
            if self._creds is None or time.monotonic() >= self._valid_until:
                return self._fetch()
            return self._creds

    def renew(self, rejected: Credentials) -> Credentials | None:
        with self._lock:
            if self._creds is not None and self._creds != rejected:
                return self._creds  # another thread renewed already
            if time.monotonic() - self._renewed_at < MIN_RENEW_INTERVAL:
                # Renewed a moment ago by a concurrent request that met the same expiry.
                return self._creds
            # A fresh answer is worth one retry even when the secret reads the same: the service may
            # have re-validated it (callers retry a request once per renewal).
            self._renewed_at = time.monotonic()
            return self._fetch()


class EcrKind(TargetKind):
    name = "ecr"
    title = "Amazon ECR"
    order = 10
    # Mounting is opt-in per registry (ECR "blob mounting" setting, 2026): not asked unless --mount.
    mount = False
    referrers = True  # since 2024-06
    provisions = True
    namespace_rule = "repository must exist"
    namespace_plan = "CreateRepository for every repository path before pushing"
    brings_credentials = True
    auth_scheme = "Basic (AWS token)"
    auth_note = "Basic AWS:<token> from ecr:GetAuthorizationToken (AWS credential chain via boto3), refreshed on expiry"

    def detect_name(self, target: Target) -> str | None:
        return f"host name {target.host} is an ECR registry" if ecr_host(target.host) else None

    def attach(self, target: Target, client: RegistryClient) -> Ecr:
        ecr = Ecr(target.host)
        client.auth.source = ecr.credential_source()
        return ecr

    def prepare(self, opened: OpenTarget, repositories: list[str], create_namespaces: bool,
                progress: Progress) -> list[str]:
        # ECR refuses pushes into a repository that does not exist, whatever the credentials: create
        # them always (a no-op for existing ones); --create-namespaces is not needed for that.
        return opened.state.ensure_repositories(repositories, progress)

    def tags_immutable(self, opened: OpenTarget, repository: str) -> bool | None:
        return opened.state.tags_immutable(repository)

    def repositories(self, opened: OpenTarget, max_pages: int | None = None) -> list[str]:
        return opened.state.repository_names(opened.target.prefix)  # the ECR API pages cheaply: no bound


KIND = EcrKind()
