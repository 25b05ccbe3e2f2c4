"""Isolated side: bundle -> private registry, then the files that point the cluster at it.

Nothing is pushed until the bundle has passed every check: structure (no truncated member, every
blob present), chart and CRD checksums, and the digest of every blob the target does not have yet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from airgap.bundle.reader import open_bundle
from airgap.copy import CopyEngine, CopyJob, CopyReport
from airgap.emit.values import render_values
from airgap.fsutil import atomic_write
from airgap.places.registry import RegistryStore
from airgap.progress import Progress
from airgap.registry.client import RegistryOptions, Target


@dataclass
class LoadOptions:
    target: Target
    registry: RegistryOptions = field(default_factory=RegistryOptions)
    values_out: Path | None = None
    crds_out: Path | None = None
    chart_out: Path | None = None
    dry_run: bool = False
    concurrency: int = 8
    scratch: Path | None = None  # where a zstd bundle is decompressed (default: next to it)
    target_kind: str = "auto"    # auto | generic | harbor | ecr | nexus (airgap/targets/)
    create_namespaces: bool = False  # create missing Harbor projects
    mount: bool | None = None    # override the target profile's cross-repository mount
    push_chart: bool = True      # the chart as an OCI artifact at PREFIX/charts/<name>:<version>
    emit: tuple[str, ...] = ()   # extra files from airgap.emit.EMITTERS, written into out_dir
    out_dir: Path | None = None


@dataclass
class LoadResult:
    report: CopyReport
    values: str
    written: list[Path]
    seconds: float
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
        return out


def load_bundle(bundle: Path, options: LoadOptions, progress: Progress | None = None) -> LoadResult:
    progress = progress or Progress()
    with open_bundle(bundle, options.scratch, progress) as reader:
        return _load(reader, bundle, options, progress)


def _load(reader, bundle: Path, options: LoadOptions, progress: Progress) -> LoadResult:
    t0 = time.monotonic()
    reader.check_complete()
    reader.verify_files()
    m = reader.manifest
    progress.note(f"bundle {bundle.name}: release {m.release}, {len(m.images)} images, "
                  f"{m.blob_count} blobs -> {options.target}")

    from airgap.targets import open_target, provision
    opened = open_target(options.target, options.registry, options.target_kind, mount=options.mount)
    target, client = opened.target, opened.client
    progress.note(f"target {opened.target}: {opened.profile.title} ({opened.kind}: {opened.detection.reason})")
    created: list[str] = []
    chart_ref, chart_version = None, ""
    try:
        src = reader.store()
        jobs = [CopyJob(i.name, src, i.digest, RegistryStore(client, target.repository(i.name),
                                                             mount=opened.profile.mount), [i.tag])
                for i in m.images]
        if options.push_chart and m.chart:
            from airgap import chartoci
            art = chartoci.build(reader.read_member(m.chart.path, limit=64 << 20), f"{bundle.name}:{m.chart.path}")
            chart_repo = target.repository(f"charts/{art.name}")
            jobs.append(CopyJob(f"chart {art.name}", art.store, art.tag,
                                RegistryStore(client, chart_repo, mount=opened.profile.mount), [art.tag]))
            chart_ref, chart_version = f"oci://{target.host}/{chart_repo}", art.version
        if not options.dry_run:
            created = provision(opened, [j.dst.repository for j in jobs], options.create_namespaces, progress)
        engine = CopyEngine(concurrency=options.concurrency, progress=progress, verify_first=True,
                            dry_run=options.dry_run)
        report = engine.copy(jobs)
    finally:
        opened.close()

    values = render_values(m, target, bundle.name)
    written: list[Path] = []
    if not options.dry_run:
        if options.values_out:
            atomic_write(options.values_out, values.encode())
            written.append(options.values_out)
        if options.crds_out:
            for f in m.crds:
                written.append(reader.extract_file(f, options.crds_out / Path(f.path).name))
        if options.chart_out and m.chart:
            written.append(reader.extract_file(m.chart, options.chart_out / Path(m.chart.path).name))
        if options.emit:
            from airgap.emit import render_all, write_all
            files = render_all(options.emit, m, target, bundle.name, insecure=options.registry.insecure,
                               ca_file=str(options.registry.ca_file) if options.registry.ca_file else None)
            written += write_all(options.out_dir or Path("."), files)
    return LoadResult(report, values, written, time.monotonic() - t0, opened.kind, opened.detection.reason,
                      created, chart_ref, chart_version)
