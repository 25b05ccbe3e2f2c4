"""Isolated side: bundle -> private registry, then the files that point the cluster at it.

Nothing is pushed until the bundle has passed every check: its signature and every image signature
(with ``key``), structure (no truncated member, every blob or part present), chart and CRD
checksums, the values keys, every output path (airgap/outputs.py), the release record (no downgrade),
what the target's tags already hold (signatures reused, a changed chart under the same version
refused: airgap/targets/plan.py) and push rights; and nothing is committed until the digest of every
blob the target does not hold yet has matched (large blobs are hashed as they stream into upload
sessions, so the bundle is read once: airgap/copy.py). The target's kind (Harbor, ECR, Nexus,
generic) decides provisioning and quirks (airgap/targets/).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from airgap import limits
from airgap.bundle.format import BundleFile, BundleImage, BundleManifest
from airgap.bundle.reader import BundleReader, open_bundle
from airgap.attachments import DEFAULT as ATTACHMENTS_DEFAULT
from airgap.attachments import check_relocation, check_spec, selected
from airgap.copy import Attached, CopyEngine, CopyJob, CopyReport, MissingBlobs
from airgap.emit.mapping import DEFAULT_NAMING, repository_for
from airgap.emit.values import render_values
from airgap.errors import AirgapError, InputError, RegistryError
from airgap.outputs import OutputPlan, resolve_dir, resolve_file
from airgap.places.base import Store
from airgap.progress import Progress
from airgap.registry.client import RegistryOptions, Target
from airgap.releases import RECORD_REPOSITORY, check_downgrade, is_recorded, read_record, write_record
from airgap.sign.formats import recorded_signatures
from airgap.sign.keys import PublicKey
from airgap.verify import verify_blobs, verify_signatures


@dataclass
class LoadOptions:
    target: Target
    registry: RegistryOptions = field(default_factory=RegistryOptions)
    values_out: Path | None = None
    policy_dir: Path | None = None  # policy.json, registries.d, Kyverno policy (when verified with a key)
    crds_out: Path | None = None
    chart_out: Path | None = None
    dry_run: bool = False
    concurrency: int = limits.COPY_CONCURRENCY
    scratch: Path | None = None  # where a zstd bundle is decompressed (default: next to it)
    key: PublicKey | None = None
    insecure_skip_verify: bool = False
    allow_downgrade: bool = False
    target_kind: str = "auto"    # auto, or a kind of airgap/targets/kinds/ (generic, harbor, ecr, nexus, ...)
    create_namespaces: bool = False  # create missing Harbor projects
    mount: bool | None = None    # override the target kind's cross-repository mount
    push_chart: bool = True      # the chart as an OCI artifact at PREFIX/charts/<name>:<version>
    emit: tuple[str, ...] = ()   # extra files from airgap.emit.EMITTERS, written into out_dir
    out_dir: Path | None = None
    naming: str = DEFAULT_NAMING   # upstream | flat: where images land (airgap/emit/mapping.py)
    attachments: str = ATTACHMENTS_DEFAULT  # which listed upstream attachments are relocated (airgap.attachments)


@dataclass
class LoadResult:
    report: CopyReport
    values: str
    written: list[Path]
    seconds: float
    verified_by: str = ""
    target_kind: str = "generic"
    target_reason: str = ""
    created: list[str] = field(default_factory=list)
    chart: str | None = None     # oci:// reference of the pushed chart
    chart_version: str = ""

    def to_json(self) -> dict:
        out = self.report.to_json()
        out["target"] = {"kind": self.target_kind, "reason": self.target_reason, "created": self.created}
        out["chart"] = {"ref": self.chart, "version": self.chart_version} if self.chart else None
        out["files_written"] = [str(p) for p in self.written]
        out["seconds"] = round(self.seconds, 3)
        out["verified_by"] = self.verified_by
        return out


def load_bundle(bundle: Path | list[Path], options: LoadOptions, progress: Progress | None = None) -> LoadResult:
    progress = progress or Progress()
    check_spec(options.attachments)  # a typo fails before the bundle is opened
    if options.key is None and not options.insecure_skip_verify:
        raise InputError("airgap load needs --key cosign.pub to verify the bundle's signatures "
                         "(or --insecure-skip-verify to load an unverified bundle)")
    with open_bundle(bundle, options.scratch, progress, key=options.key) as reader:
        return _load(reader, Path(reader.display), options, progress)


def _load(reader: BundleReader, bundle: Path, options: LoadOptions, progress: Progress) -> LoadResult:
    t0 = time.monotonic()
    verified_by = ""
    if options.key is not None:
        checked = verify_signatures(reader, options.key)
        verified_by = checked.signer
        progress.note(f"verified: bundle and {sum(i.signatures_verified for i in checked.images)} image signatures "
                      f"by key {options.key.fingerprint[:19]}")
    else:
        progress.note("WARNING: --insecure-skip-verify: signatures and the release record are NOT checked; "
                      "digests still are")
    needed = reader.check_complete()
    reader.verify_files()
    m = reader.manifest
    progress.note(f"bundle {bundle.name}: release {m.release}, {len(m.images)} images, "
                  f"{m.blob_count} blobs -> {options.target}")

    from airgap.targets import open_target
    opened = open_target(options.target, options.registry, options.target_kind, mount=options.mount)
    target, client = opened.target, opened.client
    progress.note(f"target {opened.target}: {opened.title} ({opened.kind}: {opened.detection.reason})")
    created: list[str] = []
    verified: set = set()  # blobs already digest-checked here: the engine does not hash them again
    chart_ref, chart_version = None, ""
    try:
        # Everything that can fail without the registry fails here, before the first push: values keys,
        # every output path (kind, links, writability, free space).
        values = render_values(m, target, bundle.name, options.naming)
        outputs = _plan_outputs(reader, m, target, options, values, bundle.name)
        # The bundle's own manifest and signature: a reload recognises its record without reading it.
        signed = None if options.key is None else (reader.manifest_bytes, reader.signature)
        record = read_record(client, target, options.key, progress, signed)
        check_downgrade(record, m, target, options.allow_downgrade, progress)
        jobs: list[CopyJob] = []
        wanted = check_spec(options.attachments)
        for i in m.images:
            src = reader.store(i.name)
            dst = opened.store(repository_for(i, target, options.naming))
            # The image's signatures travel as attachments of its graph; the signed bundle manifest
            # names exactly which (the scoped store resolves nothing else).
            # Then the upstream attachments it lists, each checked against it before anything is pushed.
            jobs.append(CopyJob(i.name, src, i.digest, dst, [i.tag],
                                attach=_signatures(i, src) + selected(reader, i, src, wanted)))
        if options.push_chart and m.chart:
            from airgap import chartoci
            art = chartoci.build(reader.read_member(m.chart.path, limit=limits.CHART_BYTES),
                                 f"{bundle.name}:{m.chart.path}")
            chart_repo = target.repository(f"charts/{art.name}")
            jobs.append(CopyJob(f"chart {art.name}", art.store, art.tag,
                                opened.store(chart_repo), [art.tag], kind="chart"))
            chart_ref, chart_version = f"oci://{target.host}/{chart_repo}", art.version
        if not options.dry_run and opened.impl.provisions:
            # Creating Harbor projects or ECR repositories changes the target: every blob of the
            # bundle is checked first, so a damaged bundle leaves the target untouched.
            verify_blobs(reader, progress)
            verified = set(needed)
            repos = [j.dst.repository for j in jobs]
            if options.key is not None:
                repos.append(target.repository(RECORD_REPOSITORY))
            created = opened.prepare(repos, options.create_namespaces, progress)
        from airgap.targets.plan import check_push_access, plan_tags, writes_planned
        # Unless the target holds this very bundle (a reload), its catalog may show that most of the
        # repositories are new: their tags need no lookups. The record's repository exists when a
        # record was read, so a catalog without it is partial.
        reload = is_recorded(record, reader.manifest_bytes)
        jobs = plan_tags(jobs, m, opened, options.key, progress, options.concurrency, catalog=not reload,
                         known=[target.repository(RECORD_REPOSITORY)] if record is not None else [])
        check_relocation(jobs, opened, progress)
        # A reload of what the target holds writes nothing: no push-rights probe (a POST and a DELETE).
        record_due = options.key is not None and not reload
        if not options.dry_run and jobs and (record_due or writes_planned(jobs)):
            check_push_access(opened, jobs[0].dst.repository)
        engine = CopyEngine(concurrency=options.concurrency, progress=progress, verify_first=True,
                            dry_run=options.dry_run, verified=verified)
        try:
            report = engine.copy(jobs)
        except MissingBlobs as exc:
            base = m.base or {}
            raise MissingBlobs(exc.blobs, f"{bundle.name} is a delta against {base.get('kind', 'bundle')} "
                                          f"{base.get('source', '?')} (release {base.get('release', '?')}, "
                                          f"manifest {str(base.get('digest', '?'))[:19]}): load that first") from None
        if not options.dry_run and options.key is not None:
            # Only a verified, signed bundle is recorded: the record is trusted for its signature. A new
            # tag per release, so it advances on immutable targets too; failing to write it fails the load.
            try:
                # reader.signature: the bytes the bundle's manifest was verified with, read once with it.
                write_record(client, target, reader.manifest_bytes, reader.signature, record, m.created)
            except AirgapError as exc:
                raise RegistryError(f"images are loaded, but release {m.release} could not be recorded in {target} "
                                f"for rollback protection: {exc}") from None
    finally:
        opened.close()

    written: list[Path] = []
    if not options.dry_run:
        written = outputs.write_all(reader)
    return LoadResult(report, values, written, time.monotonic() - t0, verified_by, opened.kind,
                      opened.detection.reason, created, chart_ref, chart_version)


def _signatures(image: BundleImage, src: Store) -> list[Attached]:
    # Both formats: legacy .sig tags and Sigstore-bundle referrers (airgap.sign.formats)
    return [Attached(att, src) for _, att in recorded_signatures(src, image.signatures, image.bundle_signatures)]


@dataclass
class _Outputs:
    plan: OutputPlan
    data: list[tuple[Path, str, bytes]] = field(default_factory=list)
    members: list[tuple[Path, str, BundleFile]] = field(default_factory=list)

    def write_all(self, reader: BundleReader) -> list[Path]:
        written = [self.plan.write(d, rel, data) for d, rel, data in self.data]
        for d, rel, f in self.members:
            written.append(reader.extract_file(f, self.plan.checked_path(d, rel)))
        return written


def _plan_outputs(reader: BundleReader, m: BundleManifest, target: Target, options: LoadOptions,
                  values: str, bundle_name: str) -> _Outputs:
    """Resolve and check every output path once, with its content rendered, before anything is pushed."""
    out = _Outputs(OutputPlan())
    plan = out.plan

    def add(directory: Path, rel: str, data: bytes, what: str) -> None:
        plan.add(directory, rel, len(data), what)
        out.data.append((directory, rel, data))

    if options.values_out:
        directory, name = resolve_file(options.values_out, "--values-out")
        add(directory, name, values.encode(), "--values-out")
    if options.key is not None and options.policy_dir is not None:
        from airgap.emit.policy import render_policies
        directory = resolve_dir(options.policy_dir, "--policy-dir")
        for rel, data in render_policies(m, target, options.key, options.naming).items():
            add(directory, rel, data, "--policy-dir")
    if options.crds_out:
        directory = resolve_dir(options.crds_out, "--crds-out")
        for f in m.crds:
            name = Path(f.path).name
            plan.add(directory, name, f.size, "--crds-out")
            out.members.append((directory, name, f))
    if options.chart_out and m.chart:
        directory = resolve_dir(options.chart_out, "--chart-out")
        name = Path(m.chart.path).name
        plan.add(directory, name, m.chart.size, "--chart-out")
        out.members.append((directory, name, m.chart))
    if options.emit:
        from airgap.emit import render_all
        directory = resolve_dir(options.out_dir or Path("."), "--out-dir")
        files = render_all(options.emit, m, target, bundle_name, insecure=options.registry.insecure,
                           ca_file=options.registry.ca_file, naming=options.naming)
        for rel, content in files.items():
            add(directory, rel, content if isinstance(content, bytes) else content.encode(), "--out-dir")
    if not options.dry_run:
        plan.check()
    return out
