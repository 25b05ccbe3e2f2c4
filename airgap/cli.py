"""The `airgap` command: each subcommand parses flags and makes one library call.

Exit codes: 0 success; 1 other error; 2 bad input or usage (IMAGES.md, flags, missing file);
3 bundle corrupt, truncated or failing verification; 4 registry error (network, TLS, auth);
5 a build failed or no builder is usable; 70 internal error (a bug: please report it); 130 interrupted.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from airgap import __version__
from airgap.errors import AirgapError, InputError
from airgap.progress import human_bytes, make_progress

if TYPE_CHECKING:
    from airgap.registry.client import RegistryOptions, Target

# Startup is part of every command's time (a no-op reload is mostly startup): this module imports only
# click and what --version and --help need. Library modules (httpx via airgap.registry, rich, yaml,
# cryptography) are imported inside the commands that use them; tests/unit/test_cli_startup.py holds it.


def _as_target(text: str) -> Target:
    """``--registry HOST[:PORT][/PREFIX]`` (imports the registry client only when a command runs)."""
    from airgap.registry.client import Target
    return Target.parse(text)


class _TargetKind(click.ParamType):
    """``auto`` or a kind from the registry of airgap/targets/kinds/, read when the flag is used, so a
    kind added there (or registered by a plugin) is offered without touching the CLI."""

    name = "kind"

    def _choices(self) -> list[str]:
        from airgap.targets import kind_names
        return ["auto", *kind_names()]

    def get_metavar(self, param, ctx=None) -> str:  # click 8.2 passes ctx
        return "[" + "|".join(self._choices()) + "]"

    def convert(self, value, param, ctx):
        if value in self._choices():
            return value
        self.fail(f"{value!r} is not one of {', '.join(self._choices())}", param, ctx)


def _target_kind_option(*decls: str, dest: str = "target_kind", what: str = "the registry"):
    return click.option(*decls, dest, default="auto", show_default=True, type=_TargetKind(),
                        help=f"Kind of {what}; auto detects ECR by host name, Harbor and Nexus by their APIs.")


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


def _make_registry_options(ca_file, insecure_registry, allow_insecure_auth, username, password_stdin, *,
                           target: Target | None = None, use_env: bool = True, flag: str = "--username",
                           stdin_flag: str = "--password-stdin",
                           env_prefix: str = "AIRGAP_REGISTRY") -> RegistryOptions:
    """Registry options whose username/password belong to ``target``'s host only (never to the other
    hosts a command talks to). ``use_env``: read ``<env_prefix>_USERNAME``/``_PASSWORD``."""
    ctx = click.get_current_context(silent=True)
    from_env = False
    if username and ctx is not None and flag == "--username":
        from_env = ctx.get_parameter_source("username") == click.core.ParameterSource.ENVIRONMENT
    if from_env and not use_env:
        username = None  # the target's credentials; this command has no target to give them to
    if username is None and use_env and flag != "--username":
        username = os.environ.get(f"{env_prefix}_USERNAME") or None
        from_env = username is not None
    password = None
    source = f"{flag}/{stdin_flag}"
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise InputError(f"{stdin_flag} given but standard input was empty")
    elif use_env and os.environ.get(f"{env_prefix}_PASSWORD"):
        password = os.environ[f"{env_prefix}_PASSWORD"]
        source = f"{env_prefix}_USERNAME/PASSWORD" if from_env else f"{flag} and {env_prefix}_PASSWORD"
    if from_env and password_stdin:
        source = f"{env_prefix}_USERNAME and {stdin_flag}"
    if username and password is None:
        if sys.stdin.isatty():
            where = target.host if target else "the registry"
            password = click.prompt(f"Password for {username} at {where}", hide_input=True)
            source = f"{flag} and a password prompt"
        else:
            raise InputError(f"{flag} {username} needs a password: {stdin_flag}, {env_prefix}_PASSWORD, "
                             "or run on a terminal to be prompted")
    if password and not username:
        raise InputError(f"a registry password was given without a user name ({flag})")
    from airgap.registry.client import RegistryOptions
    opts = RegistryOptions(insecure=insecure_registry, ca_file=ca_file, username=username, password=password,
                           allow_insecure_auth=allow_insecure_auth,
                           credentials_for=target.host if target else None, credentials_from=source)
    return target.options(opts) if target else opts


def _parse_platforms(values: tuple[str, ...]) -> tuple[list, bool]:
    """``--platform linux/amd64,linux/arm64`` (repeatable, comma lists) or ``all``: (platforms, all)."""
    from airgap.model import Platform

    items = [p.strip() for v in values for p in v.split(",") if p.strip()]
    if "all" in items:
        if len(items) > 1:
            raise InputError("--platform all cannot be combined with a platform list")
        return [], True
    return [Platform.parse(p) for p in items], False


def _build_options(f):
    f = click.option("--source", metavar="DIR|GIT_URL@REF",
                     help="Application sources: a checkout, or a git URL and ref cloned into the cache. "
                          "Default: the directory of IMAGES.md.")(f)
    f = click.option("--builder", type=click.Choice(["auto", "docker", "buildah"]), default="auto", show_default=True,
                     help="docker: the Docker Engine at DOCKER_HOST; buildah: daemonless; auto: docker when a "
                          "daemon answers, else buildah.")(f)
    f = click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE",
                     help="Build argument for every build (repeatable; overrides IMAGES.md args:).")(f)
    return f


def _parse_build_args(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise InputError(f"--build-arg {pair}: expected KEY=VALUE")
        out[key] = value
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="airgap", message="%(prog)s %(version)s")  # = a bundle's `tool`
@click.option("-v", "--verbose", is_flag=True, help="Debug logs (HTTP requests) on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, quiet: bool) -> None:
    """Ship a Kubernetes application's images, Helm chart and CRDs into an air-gapped cluster."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    # -v shows one line per HTTP request of our own (airgap.http: method, URL without secrets, status,
    # time), not the HTTP library's internals.
    for internals in ("httpx", "httpcore", "hpack"):
        logging.getLogger(internals).setLevel(logging.WARNING)
    if quiet:
        logging.getLogger("airgap.registry").setLevel(logging.ERROR)
    # Never at debug, even with -v: botocore logs whole responses (ECR's GetAuthorizationToken holds the
    # registry password) and request headers (session tokens).
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "docker"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
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
@click.option("--platform", "platforms", multiple=True, metavar="OS/ARCH[,...]|all",
              help="Keep only these platforms of multi-arch images (repeatable or comma-separated; 'all' keeps "
                   "every platform, overriding IMAGES.md platforms:). Default: IMAGES.md's, else all.")
@click.option("--credentials-host", metavar="HOST",
              help="The upstream registry --username/--password-stdin log in to (default: the only upstream "
                   "registry IMAGES.md mirrors from). Every other host gets only its auth-file credentials.")
@click.option("--store", type=click.Path(file_okay=False, path_type=Path),
              help="Local content store (OCI layout) for built and pulled images. Default: ~/.cache/airgap/store.")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path),
              help="cosign private key: sign every image and the bundle (password: COSIGN_PASSWORD or a prompt).")
@click.option("--base", "base_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Make a delta: a previous bundle, its manifest (inspect --manifest-out) or an inventory.")
@click.option("--base-key", type=click.Path(dir_okay=False, path_type=Path),
              help="Public key the base (manifest or inventory) must be signed with.")
@click.option("--split", "split", metavar="SIZE", help="Write parts of at most SIZE (e.g. 4G, 700M), cut at blob "
              "boundaries.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("--no-build", is_flag=True, help="Do not build: pack the built images the store already holds.")
@click.option("--tools", "tools_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Offline installer of airgap to ship as tools/ (a make dist wheelhouse). Default: "
                   "$AIRGAP_TOOLS, else dist/airgap-oci-VERSION when make dist built it.")
@click.option("--no-tools", is_flag=True, help="Ship no tools/ (airgap's installer) in the bundle.")
@click.option("--attachments", default="all", show_default=True, metavar="all|signatures|none|TYPE,...",
              help="Upstream attachments (SBOMs, attestations, signatures, other referrers) of each image and "
                   "platform manifest to carry, recursively; listed in the signed bundle manifest.")
@click.option("--signature-format", type=click.Choice(["legacy", "bundle", "both"]), default="legacy",
              show_default=True,
              help="How images are signed: cosign's sha256-<hex>.sig tags (legacy: what containers/image "
                   "policy.json, CRI-O, podman and cosign 2 verify), cosign v3 Sigstore-bundle referrers "
                   "(bundle), or both side by side.")
@_build_options
@_registry_options
@click.pass_obj
def bundle(obj, images_path, output, chart, no_chart, crds, no_crds, compress, platforms, credentials_host, store,
           key_path, base_path, base_key, split, as_json, no_build, tools_dir, no_tools, attachments, source, builder,
           build_args, **reg) -> None:
    """Build the first-party images, pull the third-party ones, sign and pack them with the chart and CRDs."""
    from airgap import imagesfile
    from airgap.bundler import BundleOptions, create_bundle, default_store

    images = imagesfile.load(images_path)
    platform_list, all_platforms = _parse_platforms(platforms)
    registry_options = _make_registry_options(**{k: reg[k] for k in _REG_KEYS},
                                              target=_upstream_login_target(images, credentials_host, reg["username"]),
                                              use_env=False)
    key = None
    if key_path:
        # Ask for the password before any build: nobody should wait minutes to then be prompted.
        from airgap.sign.keys import load_private_key, password_from_env_or_prompt
        key = load_private_key(key_path, password_from_env_or_prompt())
    base = None
    if base_path:
        from airgap.delta import load_base
        from airgap.sign.keys import load_public_key
        base = load_base(base_path, load_public_key(base_key) if base_key else None)
    if split and compress != "none":
        raise InputError("--split and --compress cannot be combined (parts are plain tars, read in place)")
    tools_dir = _tools_dir(tools_dir, no_tools, obj["quiet"])

    def build_first() -> None:
        _run_build(obj, images, store or default_store(), source, builder, (), build_args)

    opts = BundleOptions(key=key, base=base, build=None if no_build else build_first,
                         split=parse_size(split) if split else None, output=output, chart=chart,
                         crds=list(crds), no_chart=no_chart, no_crds=no_crds,
                         platforms=platform_list, all_platforms=all_platforms, store=store or default_store(),
                         registry=registry_options,
                         concurrency=reg["concurrency"], compress=None if compress == "none" else compress,
                         tools=tools_dir, attachments=attachments, signature_format=reg["signature_format"])
    progress = make_progress(obj["quiet"])
    try:
        result = create_bundle(images, opts, progress)
    finally:
        progress.close()
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    elif not obj["quiet"]:
        click.echo(f"{result.path}: {len(result.manifest.images)} images, {result.manifest.blob_count} blobs, "
                   f"{human_bytes(result.size)} in {result.seconds:.1f} s")


def _upstream_login_target(images, credentials_host: str | None, username: str | None) -> Target | None:
    """The one upstream host bundle's explicit credentials belong to."""
    from airgap.model import Reference

    if credentials_host:
        return _as_target(credentials_host)
    ctx = click.get_current_context(silent=True)
    if not username or (ctx is not None and
                        ctx.get_parameter_source("username") == click.core.ParameterSource.ENVIRONMENT):
        return None
    hosts = sorted({Reference.parse(e.source).registry for e in images.images
                    if e.source and not e.source.startswith("oci:")})
    if len(hosts) != 1:
        raise InputError(f"--username: IMAGES.md mirrors from {len(hosts)} registries ({', '.join(hosts) or 'none'}); "
                         "name the one these credentials are for with --credentials-host (the others use "
                         "docker login / podman login)")
    from airgap.registry.client import Target
    return Target(hosts[0])


def _tools_dir(given: Path | None, no_tools: bool, quiet: bool) -> Path | None:
    from airgap import tools

    if given and no_tools:
        raise InputError("give either --tools or --no-tools, not both")
    if no_tools or given:
        return given
    found = tools.default_dir()
    if found is None and os.environ.get(tools.ENV_VAR) is None and not quiet:
        click.echo("airgap: note: no tools/ in this bundle (no wheelhouse: run make dist, or give --tools DIR); "
                   "the isolated side then needs airgap installed another way. --no-tools silences this.", err=True)
    return found


def parse_size(text: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    num, unit = (t[:-1], t[-1]) if t and t[-1] in units else (t, "")
    try:
        value = int(float(num) * units[unit])
    except (ValueError, OverflowError):
        raise InputError(f"--split {text!r}: give a size like 4G, 700M or 2000000000") from None
    if value < 1 << 20:
        raise InputError(f"--split {text!r}: parts must be at least 1M")
    return value


def _run_build(obj, images, store, source, builder, only, build_args) -> list:
    from airgap.build import build_images

    progress = make_progress(obj["quiet"])
    try:
        return build_images(images, store, source, builder, only, progress, _parse_build_args(build_args))
    finally:
        progress.close()


@cli.command()
@click.option("--images", "images_path", default="IMAGES.md", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="The IMAGES.md to follow.")
@click.option("--only", multiple=True, metavar="NAME", help="Build only this image (repeatable).")
@click.option("--store", type=click.Path(file_okay=False, path_type=Path),
              help="Local content store (OCI layout) to build into. Default: ~/.cache/airgap/store.")
@click.option("--json", "as_json", is_flag=True, help="Print the built images as JSON on stdout.")
@_build_options
@click.pass_obj
def build(obj, images_path, only, store, as_json, source, builder, build_args) -> None:
    """Build the IMAGES.md build: entries into the local content store, tagged NAME:RELEASE."""
    from airgap import imagesfile
    from airgap.bundler import default_store

    images = imagesfile.load(images_path)
    built = _run_build(obj, images, store or default_store(), source, builder, only, build_args)
    if as_json:
        click.echo(json.dumps([b.to_json() for b in built], indent=2))
    for b in built if not obj["quiet"] else ():
        click.echo(f"{b.ref} {b.digest} ({b.builder}, {b.seconds:.1f} s)", err=as_json)


def _target_options(f):
    f = click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
                     help="Directory for the --emit files (default: current directory).")(f)
    f = click.option("--emit", default="", metavar="LIST",
                     help="Also write, into --out-dir: values (values-airgap.yaml), containerd (certs.d/*/hosts.toml "
                          "and ca.crt), registries-conf (CRI-O/podman registries.conf and containers-certs.d/), k3s "
                          "(k3s/RKE2 registries.yaml), kustomize (a Component with images:). Comma-separated.")(f)
    f = click.option("--naming", default="upstream", show_default=True, type=click.Choice(["upstream", "flat"]),
                     help="Where images land: upstream keeps their upstream path (PREFIX/docker.io/library/redis), so "
                          "node mirrors serve them by their upstream names; flat is PREFIX/<IMAGES.md name>.")(f)
    f = click.option("--no-chart-push", is_flag=True,
                     help="Do not push the bundled chart as an OCI artifact (PREFIX/charts/<name>:<version>).")(f)
    f = click.option("--mount/--no-mount", default=None,
                     help="Force cross-repository blob mounts on or off (default: what the target supports; "
                          "ECR only when its registry has mounting enabled).")(f)
    f = click.option("--create-namespaces", is_flag=True,
                     help="Create missing Harbor projects through the Harbor API (needs an admin or system robot).")(f)
    f = _target_kind_option("--target")(f)
    return f


_REG_KEYS = ("ca_file", "insecure_registry", "allow_insecure_auth", "username", "password_stdin")


@cli.command()
@click.argument("bundle_paths", metavar="BUNDLE [PART]...", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--registry", "registry", required=True, metavar="HOST[:PORT][/PREFIX]",
              help="Private registry and optional path prefix the images land under.")
@click.option("--values-out", default="values-airgap.yaml", show_default=True,
              help="Helm values file to write ('-' for standard output).")
@click.option("--crds-out", type=click.Path(file_okay=False, path_type=Path),
              help="Write the bundled CRD files into this directory.")
@click.option("--chart-out", type=click.Path(file_okay=False, path_type=Path),
              help="Write the bundled chart .tgz into this directory.")
@click.option("--dry-run", is_flag=True, help="Verify and plan; push and write nothing.")
@click.option("--scratch-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where a zstd-compressed bundle is decompressed first (default: next to it).")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path),
              help="cosign public key the bundle and every image must be signed with.")
@click.option("--insecure-skip-verify", is_flag=True,
              help="Load without checking signatures (digests are still checked).")
@click.option("--allow-downgrade", is_flag=True, help="Load a bundle older than the newest one this target has seen.")
@click.option("--policy-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where policy.json, registries.d/ and kyverno-policy.yaml go (default: next to the values file).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("--attachments", default="all", show_default=True, metavar="all|signatures|none|TYPE,...",
              help="Which of the bundle's upstream attachments (SBOMs, attestations, ...) to relocate with each image.")
@_target_options
@_registry_options
@click.pass_obj
def load(obj, bundle_paths, registry, values_out, crds_out, chart_out, dry_run, scratch_dir, key_path,
         insecure_skip_verify, allow_downgrade, policy_dir, as_json, attachments, target_kind, create_namespaces,
         mount, no_chart_push, emit, out_dir, naming, **reg) -> None:
    """Verify BUNDLE, push its images to a private registry and write the Helm values file."""
    from airgap.emit import parse_emit
    from airgap.loader import LoadOptions, load_bundle

    to_stdout = values_out == "-"
    key = None
    if key_path:
        from airgap.sign.keys import load_public_key
        key = load_public_key(key_path)
    if key and insecure_skip_verify:
        raise InputError("give either --key or --insecure-skip-verify, not both")
    if policy_dir is None:
        # Next to the values file as typed, never next to where a symbolic link points (airgap/outputs.py).
        policy_dir = Path.cwd() if to_stdout else Path(os.path.abspath(values_out)).parent
    opts = LoadOptions(key=key, insecure_skip_verify=insecure_skip_verify, allow_downgrade=allow_downgrade,
                       policy_dir=policy_dir, target=_as_target(registry),
                       registry=_make_registry_options(**{k: reg[k] for k in _REG_KEYS}, target=_as_target(registry)),
                       values_out=None if to_stdout else Path(values_out), crds_out=crds_out, chart_out=chart_out,
                       dry_run=dry_run, concurrency=reg["concurrency"], scratch=scratch_dir, target_kind=target_kind,
                       create_namespaces=create_namespaces, mount=mount, push_chart=not no_chart_push,
                       emit=parse_emit(emit) if emit else (), out_dir=out_dir, naming=naming,
                       attachments=attachments)
    progress = make_progress(obj["quiet"])
    try:
        result = load_bundle(list(bundle_paths), opts, progress)
    finally:
        progress.close()
    r = result.report
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    if to_stdout or dry_run:
        click.echo(result.values, nl=False)
    if obj["quiet"]:
        return  # -q: nothing but errors (and the data asked for on standard output)
    verb = "would upload" if dry_run else "uploaded"
    imgs = [i for i in r.images if i.kind == "image"]
    click.echo(f"{len(imgs)} images ({sum(1 for i in imgs if i.status == 'present')} already present): "
               f"{verb} {r.blobs_uploaded} blobs ({human_bytes(r.bytes_uploaded)}), mounted {r.blobs_mounted}, "
               f"skipped {r.blobs_present} present, in {result.seconds:.1f} s", err=True)
    attached = [i for i in r.images if i.kind not in ("image", "chart", "record")]
    if attached:
        click.echo(f"{len(attached)} signatures and attachments ("
                   f"{sum(1 for i in attached if i.status == 'present')} already present)", err=True)
    for p in result.written:
        click.echo(f"wrote {p}", err=True)
    if result.chart and not dry_run:
        click.echo(f"chart: helm pull {result.chart} --version {result.chart_version}", err=True)


@cli.command()
@click.option("--registry", "registry", required=True, metavar="HOST[:PORT][/PREFIX]", help="Registry to probe.")
@_target_kind_option("--target")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@_registry_options
def probe(registry, target_kind, as_json, **reg) -> None:
    """Show what a registry supports (auth, mount, referrers, chunked upload, OCI index) and what a load does
    about it."""
    from airgap.targets.probe import probe as run_probe

    result = run_probe(_as_target(registry), _make_registry_options(**{k: reg[k] for k in _REG_KEYS},
                                                                      target=_as_target(registry)), target_kind)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    from rich.table import Table

    console = _stdout_console(200)
    console.print(f"[bold]{result.registry}[/]: {result.kind} ({result.reason})")
    table = Table("capability", "target", "from", "what airgap does", box=None)
    for c in result.capabilities:
        table.add_row(c.name, c.supported, c.source, c.plan)
    console.print(table)


@cli.command()
@click.option("--output-key-prefix", default="cosign", show_default=True,
              help="Writes PREFIX.key (encrypted, cosign format) and PREFIX.pub.")
@click.pass_obj
def keygen(obj, output_key_prefix: str) -> None:
    """Generate a cosign-compatible key pair (password: COSIGN_PASSWORD or a prompt)."""
    from airgap.sign.keys import password_from_env_or_prompt, write_key_pair

    priv, pub = write_key_pair(Path(output_key_prefix), password_from_env_or_prompt(confirm=True))
    if not obj["quiet"]:
        click.echo(f"wrote {priv} (private, keep it on the connected side) and {pub} (public, carry it across)")


@cli.command()
@click.argument("bundle_paths", metavar="BUNDLE [PART]...", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="cosign public key the bundle must be signed with.")
@click.option("--scratch-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where a zstd-compressed bundle is decompressed first (default: next to it).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.pass_obj
def verify(obj, bundle_paths: tuple[Path, ...], key_path: Path, scratch_dir: Path | None, as_json: bool) -> None:
    """Check a bundle offline: its signature, every image signature, every blob and file digest."""
    from airgap.bundle.reader import open_bundle
    from airgap.sign.keys import load_public_key
    from airgap.verify import verify_content, verify_signatures

    key = load_public_key(key_path)
    progress = make_progress(obj["quiet"])
    try:
        with open_bundle(list(bundle_paths), scratch_dir, progress, key=key) as reader:
            report = verify_signatures(reader, key)
            verify_content(reader, report, progress)
    finally:
        progress.close()
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    if obj["quiet"]:
        return
    click.echo(f"{report.bundle}: OK. Release {report.release}, signed by {report.signer}")
    for i in report.images:
        click.echo(f"  {i.name}:{i.tag} {i.digest[:19]} signed as {i.identity} ({i.signatures_verified} signatures)")
        if i.upstream:
            click.echo(f"    upstream: {i.upstream}")
    click.echo(f"  {report.blobs_checked} blobs ({human_bytes(report.bytes_checked)}) and {report.files_checked} files "
               "match their digests")


@cli.command()
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the bundle manifest as JSON.")
@click.option("--manifest-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the bundle manifest (and its .sig) to this file: a base for a later delta.")
@click.pass_obj
def inspect(obj, bundle_path: Path, as_json: bool, manifest_out: Path | None) -> None:
    """Show what a bundle holds (reads only its manifest, the first member)."""
    from airgap.bundle.reader import read_head

    data, m, signature = read_head(bundle_path)
    if manifest_out:
        from airgap.fsutil import atomic_write
        if signature is not None:
            atomic_write(manifest_out.with_name(manifest_out.name + ".sig"), signature)
        atomic_write(manifest_out, data)
        if not obj["quiet"]:
            click.echo(f"wrote {manifest_out}" + (" and its .sig" if signature else ""), err=True)
    if as_json:
        click.echo(data.decode().rstrip())
        return
    from rich.table import Table

    # Piped output is for grep and logs: no wrapping or truncation at 80 columns.
    console = _stdout_console(240)
    console.print(f"[bold]{bundle_path}[/]: release {m.release}, created {m.created}, "
                  f"{m.blob_count} blobs, {human_bytes(m.blob_bytes)}")
    from airgap.attachments import kinds, sbom_formats

    table = Table("image", "tag", "digest", "platforms", "size", "attachments", "sbom", "source", box=None)
    for i in m.images:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(kinds(i.attachments).items())) or "-"
        table.add_row(i.name, i.tag, i.digest[:19], ",".join(i.platforms) or "-", human_bytes(i.blob_bytes),
                      counts, ",".join(sbom_formats(i.attachments)) or "none", i.source)
    console.print(table)
    if any(i.attachments for i in m.images):
        atts = Table("image", "attachment", "type", "subject", "size", "found by", box=None)
        for i in m.images:
            for a in i.attachments:
                subject = "image" if a["subject"] == i.digest else a["subject"][:19]
                atts.add_row(i.name, a["digest"][:19], a["artifactType"], subject,
                             human_bytes(a["size"] + a["blobBytes"]), a.get("tag") or a["foundBy"])
        console.print(atts)
    if m.files:
        files = Table("file", "kind", "sha256", "size", box=None)
        tools = [f for f in m.files if f.kind == "tool"]  # dozens of wheels: one line (--json lists them)
        for f in m.files:
            if f.kind != "tool":
                files.add_row(f.path, f.kind, f.sha256[:16], human_bytes(f.size))
        if tools:
            files.add_row(f"tools/ ({len(tools)} files: airgap {tools[0].version} installer)", "tool", "-",
                          human_bytes(sum(f.size for f in tools)))
        console.print(files)


@cli.command()
@click.option("--registry", "registry", required=True, metavar="HOST[:PORT][/PREFIX]")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--repository", "repos", multiple=True,
              help="Repository under the prefix to list (repeatable; default: the registry's catalog).")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path),
              help="cosign private key to sign the inventory with (writes OUTPUT.sig).")
@click.option("--json", "as_json", is_flag=True, help="Print a summary as JSON.")
@_target_kind_option("--target")
@_registry_options
@click.pass_obj
def inventory(obj, registry, output, repos, key_path, as_json, target_kind, **reg) -> None:
    """List what a registry holds (repositories, tags, blobs): the base for a delta bundle."""
    from airgap.inventory import take_inventory, write_inventory
    from airgap.targets import open_target

    key = None
    if key_path:
        from airgap.sign.keys import load_private_key, password_from_env_or_prompt
        key = load_private_key(key_path, password_from_env_or_prompt())
    target = _as_target(registry)
    opened = open_target(target, _make_registry_options(**{k: reg[k] for k in _REG_KEYS}, target=target), target_kind)
    progress = make_progress(obj["quiet"])
    try:
        inv = take_inventory(opened, list(repos) or None, progress)
    finally:
        opened.close()
        progress.close()
    written = write_inventory(inv, output, key)
    summary = {"registry": inv.registry, "repositories": len(inv.repositories), "blobs": len(inv.blobs),
               "attachments": sum(len(a) for a in inv.attachments.values()),
               "files_written": [str(p) for p in written]}
    if as_json or not obj["quiet"]:
        click.echo(json.dumps(summary, indent=2) if as_json else
                   f"{output}: {len(inv.repositories)} repositories, {len(inv.blobs)} blobs and manifests, "
                   f"{summary['attachments']} attachments")


@cli.command()
@click.option("--images", "images_path", default="IMAGES.md", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="The image set to mirror.")
@click.option("--from", "source", required=True, metavar="HOST[:PORT][/PREFIX]")
@click.option("--to", "dest", required=True, metavar="HOST[:PORT][/PREFIX]")
@click.option("--from-insecure-registry", "--from-insecure", "from_insecure", is_flag=True,
              help="Talk plain HTTP to the source registry (no TLS).")
@click.option("--to-insecure-registry", "--to-insecure", "to_insecure", is_flag=True,
              help="Talk plain HTTP to the destination registry (no TLS).")
@click.option("--from-ca-file", type=click.Path(dir_okay=False, path_type=Path),
              help="CA bundle (PEM) the source registry's TLS certificate chains to.")
@click.option("--to-ca-file", type=click.Path(dir_okay=False, path_type=Path),
              help="CA bundle (PEM) the destination registry's TLS certificate chains to.")
@click.option("--from-allow-insecure-auth", is_flag=True, help="Allow credentials over plain HTTP to the source.")
@click.option("--to-allow-insecure-auth", is_flag=True, help="Allow credentials over plain HTTP to the destination.")
@click.option("--from-username", help="Source registry user (default: its auth-file entry). "
              "Env: AIRGAP_FROM_REGISTRY_USERNAME.")
@click.option("--from-password-stdin", is_flag=True, help="Read the source password from standard input. "
              "Env: AIRGAP_FROM_REGISTRY_PASSWORD.")
@click.option("--to-username", envvar="AIRGAP_REGISTRY_USERNAME",
              help="Destination registry user (default: its auth-file entry). Env: AIRGAP_REGISTRY_USERNAME.")
@click.option("--to-password-stdin", is_flag=True, help="Read the destination password from standard input. "
              "Env: AIRGAP_REGISTRY_PASSWORD.")
@click.option("--concurrency", "-j", default=8, show_default=True, type=click.IntRange(1, 64))
@click.option("--attachments", default="all", show_default=True, metavar="all|signatures|none|TYPE,...",
              help="Which attachments (signatures, SBOMs, attestations, other referrers) travel with each image.")
@click.option("--dry-run", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@_target_kind_option("--from-target", dest="from_kind", what="the source registry")
@_target_kind_option("--to-target", dest="to_kind", what="the destination registry")
@click.option("--create-namespaces", is_flag=True,
              help="Create missing Harbor projects at the destination (needs an admin or system robot).")
@click.option("--mount/--no-mount", default=None,
              help="Force cross-repository blob mounts at the destination on or off (default: what it supports).")
@click.pass_obj
def sync(obj, images_path, source, dest, from_insecure, to_insecure, from_ca_file, to_ca_file,
         from_allow_insecure_auth, to_allow_insecure_auth, from_username, from_password_stdin, to_username,
         to_password_stdin, concurrency, attachments, dry_run, as_json, from_kind, to_kind, create_namespaces,
         mount) -> None:
    """Mirror the image set (and signatures) from one registry to another, each with its own credentials."""
    from airgap import imagesfile
    from airgap.attachments import check_spec
    from airgap.sync import sync as do_sync

    check_spec(attachments)  # a typo would silently carry nothing: refused before any request
    if from_password_stdin and to_password_stdin:
        raise InputError("only one of --from-password-stdin and --to-password-stdin can read standard input; "
                         "give the other password in its environment variable")
    src_target, dst_target = _as_target(source), _as_target(dest)
    src_opts = _make_registry_options(from_ca_file, from_insecure, from_allow_insecure_auth, from_username,
                                      from_password_stdin, target=src_target, flag="--from-username",
                                      stdin_flag="--from-password-stdin", env_prefix="AIRGAP_FROM_REGISTRY")
    dst_opts = _make_registry_options(to_ca_file, to_insecure, to_allow_insecure_auth, to_username,
                                      to_password_stdin, target=dst_target, flag="--to-username",
                                      stdin_flag="--to-password-stdin")
    images = imagesfile.load(images_path)
    progress = make_progress(obj["quiet"])
    try:
        report = do_sync(images, src_target, dst_target, source_options=src_opts, dest_options=dst_opts,
                         concurrency=concurrency, progress=progress, dry_run=dry_run, source_kind=from_kind,
                         dest_kind=to_kind, create_namespaces=create_namespaces, mount=mount,
                         attachments=attachments)
    finally:
        progress.close()
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    elif not obj["quiet"]:
        click.echo(f"{len([i for i in report.images if i.kind == 'image'])} images: copied {report.blobs_uploaded} "
                   f"blobs ({human_bytes(report.bytes_uploaded)}) in {report.seconds:.1f} s")


def _stdout_console(piped_width: int):
    """A rich Console on standard output; when piped, wide (for grep and logs), and a reader that
    went away (``| head -1``) ends the command quietly with exit 0 (rich's own default is 1)."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            _closed_stdout()

    return _Console(width=None if sys.stdout.isatty() else piped_width)


def _wants_json(argv: list[str]) -> bool:
    return "--json" in argv[1:]


def _fail(message: str, code: int) -> None:
    """One line on standard error; with --json also {"error", "exit_code"} on standard output."""
    click.echo(message, err=True)
    if _wants_json(sys.argv):
        try:
            text = message
            for prefix in ("airgap: error: ", "airgap: "):
                if text.startswith(prefix):
                    text = text[len(prefix):]
                    break
            click.echo(json.dumps({"error": text, "exit_code": code}))
        except OSError:
            pass
    sys.exit(code)


def _closed_stdout() -> None:
    """The reader went away (``airgap inspect B | head -1``): that is how pipes end, not an error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
    sys.exit(0)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        _fail("airgap: aborted", 130)
    except click.ClickException as exc:
        if _wants_json(sys.argv):
            _fail(f"airgap: error: {exc.format_message()}", exc.exit_code)
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except AirgapError as exc:
        _fail(f"airgap: error: {exc}", exc.exit_code)
    except KeyboardInterrupt:
        _fail("airgap: interrupted; rerun the same command to resume", 130)
    except BrokenPipeError:
        _closed_stdout()
    except OSError as exc:  # a path that cannot be read or written, a full disk: the user's to fix
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"airgap: error: {where}{exc.strerror or exc}", 1)
    except Exception as exc:  # a bug: one line by default, the traceback with -v
        if "-v" in sys.argv or "--verbose" in sys.argv:
            raise
        _fail(f"airgap: internal error: {exc.__class__.__name__}: {exc} (rerun with -v for details)", 70)
