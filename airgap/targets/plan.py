"""What the target's tags already hold, read before the first push.

Release after release into registries whose tags are immutable (Harbor tag immutability rules, ECR
IMMUTABLE, Nexus ALLOW_ONCE), a load must never need to move a tag:

- a ``sha256-<hex>.sig`` tag that already holds a signature of that digest by the load's key, naming the
  same identity, is kept as it is: the image is signed already (a bundle made before signatures were
  kept by digest and key carries other bytes for the same signature);
- a ``charts/<name>:<version>`` tag holding other content means the chart changed under an unchanged
  version: refused on every target, since Helm caches charts by version;
- a tag that would move where the target says tags are immutable (its kind's ``tags_immutable``) is
  refused here, naming it, instead of half-way through the push; a signature tag is refused unless the
  target says its tags may move, since a bundle's own signature must not replace a valid one.

Then, unless the plan shows that nothing is to be written (a reload of a bundle the target holds
already), one upload session is opened and cancelled in the first repository: the registry answers
and the credentials carry push rights, with no tag or manifest written.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from airgap import limits
from airgap.bundle.format import BundleManifest
from airgap.copy import Attached, CopyJob
from airgap.errors import AirgapError, InputError, TagConflict
from airgap.model import Descriptor
from airgap.model.manifest import ImageManifest
from airgap.places.base import Store, read_small
from airgap.progress import Progress
from airgap.sign.cosign import verify_signature_manifest
from airgap.sign.keys import PublicKey
from airgap.targets.session import OpenTarget


def _existing_signature_ok(dst: Store, tag: str, signed: str, identity: str,
                           key: PublicKey | None) -> str:
    """'' when the tag on the target already holds a valid signature of ``signed``; else the reason."""
    if key is None:
        return "it cannot be checked without --key"
    try:
        manifest = dst.fetch_manifest(tag)
        if not isinstance(manifest, ImageManifest):
            return "it is not a signature manifest"

        def read_blob(desc: Descriptor) -> bytes:
            return read_small(dst, desc, limits.SMALL_BLOB_BYTES)

        verified = verify_signature_manifest(manifest, read_blob, key, signed)
    except AirgapError as exc:
        return str(exc)
    if verified.docker_reference != identity:
        return f"it names {verified.docker_reference!r}, not {identity!r}"
    return ""


def _immutability(opened: OpenTarget):
    """repository -> True/False/None (unknown), asked of the target's kind once per repository."""
    cache: dict[str, bool | None] = {}

    def ask(repository: str) -> bool | None:
        if repository not in cache:
            cache[repository] = opened.tags_immutable(repository)
        return cache[repository]
    return ask


#: Catalog pages read to learn which repositories exist: beyond that the listing costs more than the
#: tag lookups it saves (Distribution walks every repository for each page).
CATALOG_PAGES = 10


def _note_unlisted(opened: OpenTarget, jobs: list[CopyJob], known: Iterable[str]) -> None:
    """A first load into a target asks about tags of repositories that do not exist yet: a HEAD and a
    tag listing each, both 404, three requests per image. One catalog listing answers them all: a
    repository it does not list holds no tag. ``known``: repositories this command saw exist (the
    release records'); a catalog that lacks one is partial (filtered, capped) and is not believed. A
    catalog that is refused (Harbor's needs an administrator, ECR has none) or long changes nothing."""
    wanted = {job.dst.repository for job in jobs if job.dst.remote and job.tags}
    if len(wanted) < 2:
        return  # one repository: its own tag lookup costs no more than the listing
    try:
        listed = set(opened.repositories(max_pages=CATALOG_PAGES))
    except AirgapError:
        return
    if not set(known) <= listed:
        return
    for job in jobs:
        if job.dst.remote and job.dst.repository not in listed:
            job.dst.note_absent()


def _ask_tags(jobs: list[CopyJob], concurrency: int) -> None:
    """Ask the target about every tag the plan will read, ``concurrency`` at a time: the answers
    land in the stores' memo (RegistryStore.known_tag), so the plan below and the engine after it send nothing
    more. 200 small images are 400 tags: one round trip each, in sequence, would be seconds. Each
    repository's first tag goes first: where it is missing the store lists the repository's tags, which
    answers the others without a request of their own."""
    asks = [[(job.dst, tag) for tag in [job.tags[0]] + [a.attachment.tag for a in job.attach if a.attachment.tag]]
            for job in jobs if job.dst.remote and job.tags]
    first = [a[0] for a in asks]
    rest = [x for a in asks for x in a[1:]]
    for wave in (first, rest):
        wave = [(dst, tag) for dst, tag in wave if not dst.known_tag(tag)[0] and not dst.holds_no_tags()]
        if len(wave) < 2 or concurrency < 2:
            continue  # the plan asks these itself, in order
        with ThreadPoolExecutor(min(concurrency, len(wave))) as pool:
            list(pool.map(lambda ask: ask[0].resolve_tag(ask[1]), wave))


def plan_tags(jobs: list[CopyJob], manifest: BundleManifest, opened: OpenTarget, key: PublicKey | None,
              progress: Progress, concurrency: int = limits.COPY_CONCURRENCY, *, catalog: bool = False,
              known: Iterable[str] = ()) -> list[CopyJob]:
    """``catalog``: learn from the target's catalog which repositories do not exist yet (worth it
    unless this is a reload, where they all do); ``known``: repositories known to exist."""
    identities = {i.name: i.identity for i in manifest.images}
    if catalog:
        _note_unlisted(opened, jobs, known)
    _ask_tags(jobs, concurrency)
    out: list[CopyJob] = []
    conflicts: list[str] = []
    immutable = _immutability(opened)
    for job in jobs:
        dst = job.dst
        if not dst.remote or not job.tags:
            out.append(job)
            continue
        job.attach = _plan_signatures(job, identities.get(job.name, ""), key, immutable, conflicts, progress)
        if job.kind == "image":  # what the target's kind refuses to store fails here, not mid-push
            opened.check_manifest(job.src.fetch_manifest(job.ref), f"image {job.name}")
        tag = job.tags[0]
        have = dst.resolve_tag(tag)
        want = job.ref if job.ref.startswith("sha256:") else str(job.src.fetch_manifest(job.ref).digest)
        if have is None or str(have) == want:
            out.append(job)
            continue
        where = f"{dst.description}:{tag}"
        if job.name.startswith("chart "):
            raise InputError(f"{job.name.split(' ', 1)[1]} version {tag}: {where} already holds a different chart "
                             f"({str(have)[:19]}, this bundle has {want[:19]}); a changed chart needs a new "
                             "version in Chart.yaml. Nothing was pushed")
        state = immutable(dst.repository)
        if state:
            conflicts.append(f"{where} points at {str(have)[:19]}, this bundle has {want[:19]}")
            continue
        if state is None:
            progress.note(f"warning: {where} will move to {want[:19]}; if tags are immutable there, the push fails")
        out.append(job)
    if conflicts:
        raise TagConflict(f"{opened.target} ({opened.title}) does not let these tags move "
                          f"({len(conflicts)}): {'; '.join(conflicts[:3])}"
                          f"{' ...' if len(conflicts) > 3 else ''}. Nothing was pushed")
    return out


def _plan_signatures(job: CopyJob, identity: str, key: PublicKey | None, immutable, conflicts: list[str],
                     progress: Progress) -> list[Attached]:
    """The job's attachments that go under a tag, minus those the target holds validly already."""
    keep: list[Attached] = []
    dst = job.dst
    for attached in job.attach:
        att = attached.attachment
        if att.tag is None:
            keep.append(attached)
            continue
        have = dst.resolve_tag(att.tag)
        if have is None or have == att.digest:
            keep.append(attached)
            continue
        where = f"{dst.description}:{att.tag}"
        reason = _existing_signature_ok(dst, att.tag, str(att.subject), identity, key)
        if not reason:
            progress.note(f"= {where}: signed already by this key; the signature there is kept")
            continue
        if immutable(dst.repository) is not False:
            conflicts.append(f"{where} holds another signature ({reason})")
            continue
        keep.append(attached)
    return keep


def writes_planned(jobs: list[CopyJob]) -> bool:
    """Whether the copy of the planned ``jobs`` may write anything, from what the plan saw of the
    target's tags (no request). False only when every job's tags already name its root and every
    attachment it carries is under a tag that names it: exactly when the engine finds each job present
    and writes nothing. Anything the plan did not see (a job without tags, an attachment by digest,
    a place that remembers no tag answers) counts as a write."""
    for job in jobs:
        dst = job.dst
        if not job.tags:
            return True
        want = job.ref if job.ref.startswith("sha256:") else str(job.src.fetch_manifest(job.ref).digest)
        for tag in job.tags:
            seen, have = dst.known_tag(tag)
            if not seen or str(have) != want:
                return True
        for attached in job.attach:
            att = attached.attachment
            if att.tag is None:
                return True
            seen, have = dst.known_tag(att.tag)
            if not seen or have != att.digest:
                return True
    return False


def check_push_access(opened: OpenTarget, repository: str) -> None:
    """Open an upload session and cancel it: proves the registry answers and the credentials may push."""
    client = opened.client
    path = f"{client.repo_path(repository)}/blobs/uploads/"
    resp = client.request("POST", path, scope=f"repository:{repository}:pull,push", ok=(201, 202),
                          what=f"push-rights check on {repository}")
    location = resp.headers.get("location")
    if location and resp.status_code == 202:
        try:
            client.request("DELETE", location, scope=f"repository:{repository}:pull,push",
                           ok=tuple(range(200, 600)), what="cancelling the push-rights check")
        except AirgapError:
            pass  # an abandoned upload session expires on its own
