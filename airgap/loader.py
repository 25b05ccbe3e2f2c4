"""Isolated side: bundle -> private registry, then the files that point the cluster at it.

Nothing is pushed until the bundle has passed every check: its signature and every image signature
(with ``key``), structure (no truncated member, every blob present), chart and CRD checksums, the
release record (no downgrade), and the digest of every blob the target does not hold yet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from airgap.bundle.format import SIGNATURE_NAME
from airgap.bundle.reader import BundleReader, open_bundle
from airgap.copy import CopyEngine, CopyJob, CopyReport, MissingBlobs
from airgap.emit.policy import write_policies
from airgap.emit.values import render_values
from airgap.errors import InputError
from airgap.fsutil import atomic_write
from airgap.places.registry import RegistryStore
from airgap.progress import Progress
from airgap.registry.client import RegistryClient, RegistryOptions, Target
from airgap.releases import check_downgrade, read_record, write_record
from airgap.sign.cosign import signature_tag
from airgap.sign.keys import PublicKey
from airgap.verify import verify_signatures


@dataclass
class LoadOptions:
    target: Target
    registry: RegistryOptions = field(default_factory=RegistryOptions)
    values_out: Path | None = None
    policy_dir: Path | None = None  # policy.json, registries.d, Kyverno policy (when verified with a key)
    crds_out: Path | None = None
    chart_out: Path | None = None
    dry_run: bool = False
    concurrency: int = 8
    scratch: Path | None = None  # where a zstd bundle is decompressed (default: next to it)
    key: PublicKey | None = None
    insecure_skip_verify: bool = False
    allow_downgrade: bool = False


@dataclass
class LoadResult:
    report: CopyReport
    values: str
    written: list[Path]
    seconds: float
    verified_by: str = ""

    def to_json(self) -> dict:
        out = self.report.to_json()
        out["files_written"] = [str(p) for p in self.written]
        out["seconds"] = round(self.seconds, 3)
        out["verified_by"] = self.verified_by
        return out


def load_bundle(bundle: Path | list[Path], options: LoadOptions, progress: Progress | None = None) -> LoadResult:
    progress = progress or Progress()
    if options.key is None and not options.insecure_skip_verify:
        raise InputError("airgap load needs --key cosign.pub to verify the bundle's signatures "
                         "(or --insecure-skip-verify to load an unverified bundle)")
    with open_bundle(bundle, options.scratch, progress) as reader:
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
    reader.check_complete()
    reader.verify_files()
    m = reader.manifest
    progress.note(f"bundle {bundle.name}: release {m.release}, {len(m.images)} images, "
                  f"{m.blob_count} blobs -> {options.target}")

    client = RegistryClient(options.target.host, options.registry)
    try:
        record = read_record(client, options.target, options.key, progress)
        check_downgrade(record, m, options.target, options.allow_downgrade, progress)
        src = reader.store()
        jobs: list[CopyJob] = []
        for i in m.images:
            dst = RegistryStore(client, options.target.repository(i.name))
            jobs.append(CopyJob(i.name, src, i.digest, dst, [i.tag]))
            for s in i.signatures:
                jobs.append(CopyJob(f"{i.name} signature", src, s["digest"], dst, [signature_tag(s["signed"])],
                                    kind="signature"))
        engine = CopyEngine(concurrency=options.concurrency, progress=progress, verify_first=True,
                            dry_run=options.dry_run)
        try:
            report = engine.copy(jobs)
        except MissingBlobs as exc:
            base = m.base or {}
            raise MissingBlobs(exc.blobs, f"{bundle.name} is a delta against {base.get('kind', 'bundle')} "
                                          f"{base.get('source', '?')} (release {base.get('release', '?')}, "
                                          f"manifest {str(base.get('digest', '?'))[:19]}): load that first") from None
        if not options.dry_run and options.key is not None:
            # Only a verified, signed bundle is recorded: the record is trusted for its signature.
            signature = reader.read_member(SIGNATURE_NAME, 4096)
            write_record(client, options.target, reader.manifest_bytes, signature, record, m.created)
    finally:
        client.close()

    values = render_values(m, options.target, bundle.name)
    written: list[Path] = []
    if not options.dry_run:
        if options.values_out:
            atomic_write(options.values_out, values.encode())
            written.append(options.values_out)
        if options.key is not None and options.policy_dir is not None:
            written += write_policies(options.policy_dir, m, options.target, options.key)
        if options.crds_out:
            for f in m.crds:
                written.append(reader.extract_file(f, options.crds_out / Path(f.path).name))
        if options.chart_out and m.chart:
            written.append(reader.extract_file(m.chart, options.chart_out / Path(m.chart.path).name))
    return LoadResult(report, values, written, time.monotonic() - t0, verified_by)
