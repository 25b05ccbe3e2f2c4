"""What each kind of registry does differently, as data.

Each field is one behaviour a pusher has to know about, with the registry and the source it comes
from (see also ../shared/REGISTRIES.md). Code asks the profile; it never tests ``kind == "nexus"``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

KINDS = ("generic", "harbor", "ecr", "nexus")


@dataclass(frozen=True)
class Profile:
    kind: str
    title: str
    #: Cross-repository blob mount (POST ?mount=&from=). Nexus answers 202 and starts a plain upload
    #: (nexus-public docs: "cross-repo mount not supported"); ECR supports it only when the registry
    #: opts in (ECR "blob mounting" registry setting, 2026), so we do not ask unless told to.
    mount: bool = True
    #: The OCI referrers API (GET /v2/<name>/referrers/<digest>). Distribution 2.8/3.x: no (PRs
    #: distribution#4827/#4828 open); Harbor since v2.8; ECR since 2024-06; Nexus 3: no (OCI 1.0 only).
    #: None: unknown, decided by probing.
    referrers: bool | None = None
    #: Upload chunking. ECR refuses PATCH chunks under 5 MB except the last (ECR UploadLayerPart
    #: docs), so every registry gets one streaming PATCH per blob: chunking buys nothing offline.
    chunked_upload: str = "single streaming PATCH + PUT?digest"
    #: Image indexes. Nexus 3 rejects an index without a top-level mediaType (zarf#2351); our
    #: bundles keep the bytes as pulled, and indexes we build always carry it.
    oci_index: str = "supported"
    #: What must exist before a push. Harbor: the project (else a misleading 401, harbor#20544);
    #: ECR: every full repository path (CreateRepository; RepositoryAlreadyExistsException = fine).
    namespaces: str = "implicit"          # "implicit" | "project" | "repository"
    #: Existing tags may be immutable: Harbor tag immutability rules answer 412 even for the same
    #: digest (Harbor docs "Create Tag Immutability Rules"); ECR IMMUTABLE repositories answer 400
    #: TAG_INVALID / ImageTagAlreadyExistsException. We HEAD before every tag push either way.
    immutable_tags: bool = False
    #: Where the target says whether a repository's tags are immutable, so a tag that would move is
    #: refused before the first push only where it really cannot move: Harbor's
    #: ``GET /projects/{name}/immutabletagrules`` (swagger v2.0), ECR's ``DescribeRepositories``
    #: ``imageTagMutability``, Nexus's ``GET /service/rest/v1/repositories/docker/hosted/{name}``
    #: ``storage.writePolicy`` (ALLOW_ONCE; needs an admin, else unknown). "" for none.
    immutability_api: str = ""
    #: HEAD on a blob may say 200 while a manifest PUT then says MANIFEST_BLOB_UNKNOWN
    #: (nexus-public#264): re-upload that manifest's blobs without trusting HEAD and retry once.
    trust_blob_head: bool = True
    #: Where the registry's own auth comes from.
    auth: str = "docker config.json / --username (Basic or Bearer token, as the registry asks)"

    def with_mount(self, enabled: bool) -> Profile:
        return replace(self, mount=enabled)


GENERIC = Profile("generic", "OCI distribution registry")

HARBOR = Profile(
    "harbor", "Harbor v2",
    mount=True, referrers=True, namespaces="project", immutable_tags=True, immutability_api="harbor",
    auth="Bearer token from <harbor>/service/token (Basic user or robot$<project>+<name>)",
)

ECR = Profile(
    "ecr", "Amazon ECR",
    mount=False, referrers=True, namespaces="repository", immutable_tags=True, immutability_api="ecr",
    auth="Basic AWS:<token> from ecr:GetAuthorizationToken (AWS credential chain via boto3), refreshed on expiry",
)

NEXUS = Profile(
    "nexus", "Sonatype Nexus Repository 3",
    mount=False, referrers=False, oci_index="OCI 1.0: index mediaType always set", trust_blob_head=False,
    immutable_tags=True, immutability_api="nexus",  # deployment policy ALLOW_ONCE
    auth="Basic (upper-case BASIC challenge, forceBasicAuth)",
)

PROFILES: dict[str, Profile] = {p.kind: p for p in (GENERIC, HARBOR, ECR, NEXUS)}


def profile_for(kind: str) -> Profile:
    return PROFILES[kind]
