"""`airgap probe`: what a target registry supports and what a load will do about it.

Read-only: GET /v2/ for the auth scheme and a referrers query for a digest that cannot exist; the rest
comes from the target's kind (mount and immutability cannot be seen without writing).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import httpx

from airgap import limits
from airgap.errors import RegistryError
from airgap.registry.auth import parse_challenge
from airgap.registry.client import RegistryOptions, Target
from airgap.targets.base import OpenTarget
from airgap.targets.session import open_target

_NO_SUCH_DIGEST = "sha256:" + "0" * 64


@dataclass(frozen=True)
class Capability:
    name: str
    supported: str
    source: str      # "probed" or "kind"
    plan: str


@dataclass(frozen=True)
class ProbeResult:
    registry: str
    kind: str
    reason: str
    capabilities: list[Capability]

    def to_json(self) -> dict:
        return {"registry": self.registry, "kind": self.kind, "reason": self.reason,
                "capabilities": [asdict(c) for c in self.capabilities]}


def _auth(t: OpenTarget) -> Capability:
    if t.impl.brings_credentials:  # ECR's AWS token: GET /v2/ would show only a challenge
        return Capability("auth scheme", t.impl.auth_scheme, "kind", t.impl.auth_note)
    try:
        resp = t.client.http.get(t.client.base + "/v2/", timeout=limits.TARGET_PROBE_TIMEOUT)
    except httpx.HTTPError as exc:
        raise t.client.transport_error(exc) if isinstance(exc, httpx.TransportError) else \
            RegistryError(f"registry {t.client.host}: {exc}") from None
    if resp.status_code == 200:
        return Capability("auth scheme", "none (anonymous push)", "probed", "no credentials sent")
    header = resp.headers.get("www-authenticate")
    if resp.status_code == 401 and header:
        ch = parse_challenge(header)
        raw = header.split(" ", 1)[0]
        realm = ch.params.get("realm", "")
        if ch.scheme == "bearer":
            plan = f"token from {realm} per repository scope, reused until it expires"
        else:
            plan = "credentials sent up front after the first challenge"
        note = f" (challenge spelled {raw!r})" if raw not in ("Basic", "Bearer") else ""
        return Capability("auth scheme", f"{raw.capitalize()}{note}", "probed", plan)
    if t.client.api_root:
        return Capability("auth scheme", t.impl.auth_note, "kind", "as the kind says")
    return Capability("auth scheme", f"unknown (GET /v2/ answered {resp.status_code})", "probed",
                      "credentials from flags or docker config when asked")


def _referrers(t: OpenTarget) -> Capability:
    repo = t.target.repository("airgap-probe")
    supported: bool | None = None
    try:
        resp = t.client.request("GET", f"{t.client.repo_path(repo)}/referrers/{_NO_SUCH_DIGEST}",
                                scope=f"repository:{repo}:pull", ok=tuple(range(200, 600)), what="referrers probe")
        if resp.status_code == 200 and "index" in resp.headers.get("content-type", ""):
            supported = True
        elif resp.status_code in (404, 405) and t.impl.referrers is None:
            supported = False
    except RegistryError:
        pass
    source = "probed" if supported is not None else "kind"
    if supported is None:
        supported = bool(t.impl.referrers)
    # Bundles carry no signatures yet; this is the scheme a signature-carrying bundle would use.
    plan = ("signatures and attestations as referrers (subject field)" if supported
            else "signatures under the tag scheme sha256-<hex>.sig / .att")
    return Capability("referrers API", "yes" if supported else "no", source, plan)


def capabilities(t: OpenTarget) -> list[Capability]:
    k = t.impl
    return [
        _auth(t),
        Capability("cross-repo mount", "yes" if t.mount else "no", "kind",
                   "shared layers uploaded once, mounted into the other repositories" if t.mount
                   else "each repository gets its own upload; no mount requests"),
        _referrers(t),
        Capability("namespaces", k.namespace_rule, "kind", k.namespace_plan),
        Capability("immutable tags", "possible" if k.may_freeze_tags else "no", "kind",
                   "HEAD every tag first; the same digest counts as pushed, never re-pushed; a tag that would "
                   "move is refused before the first push where the target says it is frozen"),
    ]


def probe(target: Target, options: RegistryOptions, kind: str = "auto") -> ProbeResult:
    t = open_target(target, options, kind)
    try:
        return ProbeResult(str(t.target), t.kind, t.detection.reason, capabilities(t))
    finally:
        t.close()
