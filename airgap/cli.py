"""The `airgap` command: each subcommand parses flags and makes one library call.

Exit codes: 0 success; 1 other error; 2 bad input or usage (IMAGES.md, flags, missing file);
3 bundle corrupt, truncated or failing verification; 4 registry error (network, TLS, auth);
70 internal error (a bug: please report it); 130 interrupted.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from airgap import __version__
from airgap.errors import AirgapError, InputError
from airgap.progress import human_bytes, make_progress
from airgap.registry.client import RegistryOptions, Target


def _registry_options(f):
    f = click.option("--ca-file", type=click.Path(dir_okay=False, path_type=Path),
                     help="CA bundle (PEM) the registry's TLS certificate chains to.")(f)
    f = click.option("--insecure-registry", is_flag=True, help="Talk plain HTTP to the registry (no TLS).")(f)
    f = click.option("--allow-insecure-auth", is_flag=True,
                     help="Allow sending credentials over plain HTTP to a non-loopback registry.")(f)
    f = click.option("--username", envvar="AIRGAP_REGISTRY_USERNAME",
                     help="Registry user (default: docker's config.json). Env: AIRGAP_REGISTRY_USERNAME.")(f)
    f = click.option("--password-stdin", is_flag=True,
                     help="Read the registry password from standard input. Env: AIRGAP_REGISTRY_PASSWORD.")(f)
    f = click.option("--concurrency", "-j", default=8, show_default=True, type=click.IntRange(1, 64),
                     help="Blobs moved at once.")(f)
    return f


def _make_registry_options(ca_file, insecure_registry, allow_insecure_auth, username, password_stdin) -> RegistryOptions:
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise InputError("--password-stdin given but standard input was empty")
    return RegistryOptions(insecure=insecure_registry, ca_file=ca_file, username=username, password=password,
                           allow_insecure_auth=allow_insecure_auth)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="airgap")
@click.option("-v", "--verbose", is_flag=True, help="Debug logs (HTTP requests) on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, quiet: bool) -> None:
    """Ship a Kubernetes application's images, Helm chart and CRDs into an air-gapped cluster."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    ctx.obj = {"verbose": verbose, "quiet": quiet}


@cli.command()
@click.option("--images", "images_path", default="IMAGES.md", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="The IMAGES.md to follow.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Bundle file to write (written as OUT.partial, renamed when complete).")
@click.option("--chart", type=click.Path(path_type=Path), help="Chart directory or .tgz (overrides IMAGES.md).")
@click.option("--no-chart", is_flag=True, help="Bundle images and CRDs only.")
@click.option("--crds", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="CRD file to ship (repeatable; overrides IMAGES.md crds:).")
@click.option("--no-crds", is_flag=True, help="Ship no CRD files.")
@click.option("--compress", type=click.Choice(["none", "zstd"]), default="none", show_default=True,
              help="Outer compression. zstd saves space on uncompressed layers, but the isolated side then "
                   "needs scratch space to decompress before loading.")
@click.option("--platform", "platforms", multiple=True, metavar="OS/ARCH",
              help="Keep only these platforms of multi-arch images (repeatable; default: all).")
@click.option("--store", type=click.Path(file_okay=False, path_type=Path),
              help="Local content store (OCI layout) for pulled images. Default: ~/.cache/airgap/store.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@_registry_options
@click.pass_obj
def bundle(obj, images_path, output, chart, no_chart, crds, no_crds, compress, platforms, store, as_json, **reg) -> None:
    """Collect the images IMAGES.md lists, the Helm chart and the CRDs into one offline bundle."""
    from airgap import imagesfile
    from airgap.bundler import BundleOptions, create_bundle, default_store
    from airgap.model import Platform

    images = imagesfile.load(images_path)
    opts = BundleOptions(output=output, chart=chart, crds=list(crds), no_chart=no_chart, no_crds=no_crds,
                         platforms=[Platform.parse(p) for p in platforms], store=store or default_store(),
                         registry=_make_registry_options(**{k: reg[k] for k in _REG_KEYS}),
                         concurrency=reg["concurrency"], compress=None if compress == "none" else compress)
    progress = make_progress(obj["quiet"])
    try:
        result = create_bundle(images, opts, progress)
    finally:
        progress.close()
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo(f"{result.path}: {len(result.manifest.images)} images, {result.manifest.blob_count} blobs, "
                   f"{human_bytes(result.size)} in {result.seconds:.1f} s")


def _target_options(f):
    f = click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
                     help="Directory for the --emit files (default: current directory).")(f)
    f = click.option("--emit", default="", metavar="LIST",
                     help="Also write, into --out-dir: values (values-airgap.yaml), containerd (certs.d/*/hosts.toml), "
                          "registries-conf (CRI-O/podman registries.conf), kustomize (a Component with images:). "
                          "Comma-separated.")(f)
    f = click.option("--no-chart-push", is_flag=True,
                     help="Do not push the bundled chart as an OCI artifact (PREFIX/charts/<name>:<version>).")(f)
    f = click.option("--mount/--no-mount", default=None,
                     help="Force cross-repository blob mounts on or off (default: what the target supports; "
                          "ECR only when its registry has mounting enabled).")(f)
    f = click.option("--create-namespaces", is_flag=True,
                     help="Create missing Harbor projects through the Harbor API (needs an admin or system robot).")(f)
    f = click.option("--target", "target_kind", default="auto", show_default=True,
                     type=click.Choice(["auto", "generic", "harbor", "ecr", "nexus"]),
                     help="Kind of registry; auto detects ECR by host name, Harbor and Nexus by their APIs.")(f)
    return f


_REG_KEYS = ("ca_file", "insecure_registry", "allow_insecure_auth", "username", "password_stdin")


@cli.command()
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--registry", "registry", required=True, metavar="HOST[:PORT][/PREFIX]",
              help="Private registry and optional path prefix the images land under.")
@click.option("--values-out", default="airgap-values.yaml", show_default=True,
              help="Helm values file to write ('-' for standard output).")
@click.option("--crds-out", type=click.Path(file_okay=False, path_type=Path),
              help="Write the bundled CRD files into this directory.")
@click.option("--chart-out", type=click.Path(file_okay=False, path_type=Path),
              help="Write the bundled chart .tgz into this directory.")
@click.option("--dry-run", is_flag=True, help="Verify and plan; push and write nothing.")
@click.option("--scratch-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where a zstd-compressed bundle is decompressed first (default: next to it).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@_target_options
@_registry_options
@click.pass_obj
def load(obj, bundle_path, registry, values_out, crds_out, chart_out, dry_run, scratch_dir, as_json, target_kind,
         create_namespaces, mount, no_chart_push, emit, out_dir, **reg) -> None:
    """Verify BUNDLE, push its images to a private registry and write the Helm values file."""
    from airgap.emit import parse_emit
    from airgap.loader import LoadOptions, load_bundle

    to_stdout = values_out == "-"
    opts = LoadOptions(target=Target.parse(registry),
                       registry=_make_registry_options(**{k: reg[k] for k in _REG_KEYS}),
                       values_out=None if to_stdout else Path(values_out), crds_out=crds_out, chart_out=chart_out,
                       dry_run=dry_run, concurrency=reg["concurrency"], scratch=scratch_dir, target_kind=target_kind,
                       create_namespaces=create_namespaces, mount=mount, push_chart=not no_chart_push,
                       emit=parse_emit(emit) if emit else (), out_dir=out_dir)
    progress = make_progress(obj["quiet"])
    try:
        result = load_bundle(bundle_path, opts, progress)
    finally:
        progress.close()
    r = result.report
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    verb = "would upload" if dry_run else "uploaded"
    click.echo(f"{len(r.images)} images ({sum(1 for i in r.images if i.status == 'present')} already present): "
               f"{verb} {r.blobs_uploaded} blobs ({human_bytes(r.bytes_uploaded)}), mounted {r.blobs_mounted}, "
               f"skipped {r.blobs_present} present, in {result.seconds:.1f} s", err=True)
    if to_stdout or dry_run:
        click.echo(result.values, nl=False)
    for p in result.written:
        click.echo(f"wrote {p}", err=True)
    if result.chart and not dry_run:
        click.echo(f"chart: helm pull {result.chart} --version {result.chart_version}", err=True)


@cli.command()
@click.option("--registry", "registry", required=True, metavar="HOST[:PORT][/PREFIX]", help="Registry to probe.")
@click.option("--target", "target_kind", default="auto", show_default=True,
              type=click.Choice(["auto", "generic", "harbor", "ecr", "nexus"]), help="Kind of registry.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@_registry_options
def probe(registry, target_kind, as_json, **reg) -> None:
    """Show what a registry supports (auth, mount, referrers, chunked upload, OCI index) and what a load does about it."""
    from airgap.targets.probe import probe as run_probe

    result = run_probe(Target.parse(registry), _make_registry_options(**{k: reg[k] for k in _REG_KEYS}), target_kind)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(f"[bold]{result.registry}[/]: {result.kind} ({result.reason})")
    table = Table("capability", "target", "from", "what airgap does", box=None)
    for c in result.capabilities:
        table.add_row(c.name, c.supported, c.source, c.plan)
    console.print(table)


@cli.command()
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the bundle manifest as JSON.")
def inspect(bundle_path: Path, as_json: bool) -> None:
    """Show what a bundle holds (reads only its manifest, the first member)."""
    from airgap.bundle.reader import read_manifest

    data, m = read_manifest(bundle_path)
    if as_json:
        click.echo(data.decode().rstrip())
        return
    from rich.console import Console
    from rich.table import Table

    # Piped output is for grep and logs: no wrapping or truncation at 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 240)
    console.print(f"[bold]{bundle_path}[/]: release {m.release}, created {m.created}, "
                  f"{m.blob_count} blobs, {human_bytes(m.blob_bytes)}")
    table = Table("image", "tag", "digest", "platforms", "size", "source", box=None)
    for i in m.images:
        table.add_row(i.name, i.tag, i.digest[:19], ",".join(i.platforms) or "-", human_bytes(i.blob_bytes), i.source)
    console.print(table)
    if m.files:
        files = Table("file", "kind", "sha256", "size", box=None)
        for f in m.files:
            files.add_row(f.path, f.kind, f.sha256[:16], human_bytes(f.size))
        console.print(files)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("airgap: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except AirgapError as exc:
        click.echo(f"airgap: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("airgap: interrupted; rerun the same command to resume", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: one line by default, the traceback with -v
        if "-v" in sys.argv or "--verbose" in sys.argv:
            raise
        click.echo(f"airgap: internal error: {exc.__class__.__name__}: {exc} (rerun with -v for details)", err=True)
        sys.exit(70)
