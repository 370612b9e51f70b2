"""`sae-atlas`: build an atlas, (re)explain its features, serve the app."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from core.config_help import (
    add_field_option,
    apply_overrides,
    describe,
    field_help,
    field_types,
    parse_assignment,
)
from core.explain.cli import add_explain_parser, cmd_explain
from core.paths import REPO_ROOT, default_atlas_path
from core.pipeline.config import BuildConfig, SaeSpec, default_profile, tiny_profile
from core.pipeline.stages import STAGE_NAMES

# Options that set one field of the build config: (flag, section, field). Their help is the
# field's docstring; unset, they leave the profile's value.
_BUILD_OPTIONS = (
    ("--model", "model", "spec"),
    ("--device", "model", "device"),
    ("--corpus", "corpus", "spec"),
    ("--tokens", "corpus", "n_tokens"),
    ("--d-sae", "train", "d_sae"),
    ("--k", "train", "k"),
)


def add_build_parser(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser(
        "build",
        help="build an atlas (default: the offline SmolLM2 profile)",
        description="Build an atlas. Every value not given keeps the profile's; the defaults "
        "shown are the default profile's (the library's BuildConfig defaults).",
    )
    b.add_argument(
        "--profile",
        choices=["default", "tiny"],
        default="default",
        help="default: the full offline build; tiny: a small, fast build for tests",
    )
    b.add_argument("--out", type=Path, default=None, help=field_help(BuildConfig, "out", None))
    for flag, section, name in _BUILD_OPTIONS:
        cls = field_types(BuildConfig)[section]
        add_field_option(b, cls, name, flag=flag, dest=f"{section}.{name}", unset=True)
    b.add_argument(
        "--sae",
        action="append",
        default=[],
        metavar="SITE[=PATH]",
        help=f"repeatable; replaces the profile's SAEs. SITE: {field_help(SaeSpec, 'site')} "
        f"PATH: {field_help(SaeSpec, 'path')}",
    )
    add_field_option(b, SaeSpec, "format", flag="--sae-format", dest="sae_format")
    b.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="any other config field, e.g. train.epochs=2 or geometry.window=32; repeatable "
        "(--show-config lists them all)",
    )
    b.add_argument(
        "--show-config",
        action="store_true",
        help="print the resulting config with each field's documentation, and exit",
    )
    b.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run capture and encode on Ray actors: no ADDRESS starts a local cluster, 'auto' "
        "joins the running one, or host:port (pip install -e '.[ray]'; --set ray.actors=N …)",
    )
    b.add_argument(
        "--overwrite",
        default="",
        metavar="STAGE,...",
        help=f"stages to re-run, each with all after it: {', '.join(STAGE_NAMES)}",
    )


def build_config(args: argparse.Namespace) -> BuildConfig:
    """The profile with the command line applied; ValueError (SiteError) for impossible values."""
    out = str(args.out) if args.out else None
    if args.profile == "tiny":
        cfg = tiny_profile(out or str(default_atlas_path()))
    else:
        cfg = default_profile(out)
    overrides = {
        f"{section}.{name}": vars(args)[f"{section}.{name}"]
        for _, section, name in _BUILD_OPTIONS
        if vars(args)[f"{section}.{name}"] is not None
    }
    overrides.update(parse_assignment(BuildConfig, item) for item in args.set)
    if args.sae_format and not args.sae:
        raise ValueError("--sae-format applies to the SAEs given with --sae; none were given")
    if args.sae:
        overrides["saes"] = [_sae_spec(item, args.sae_format) for item in args.sae]
    if args.ray is not None:
        overrides["ray.enabled"] = True
        if args.ray != "local":
            overrides["ray.address"] = args.ray
    return apply_overrides(cfg, overrides)


def _sae_spec(item: str, fmt: str | None) -> SaeSpec:
    site, _, path = item.partition("=")
    return SaeSpec(site=site, path=path or None, format=fmt)


def cmd_build(args: argparse.Namespace) -> int:
    from core.corpus import CorpusError
    from core.model.loading import ModelLoadError
    from core.pipeline.run import build
    from core.sae.model import SAEError

    try:
        cfg = build_config(args)  # every value is checked before anything loads
        if args.show_config:
            print("\n".join(describe(cfg)))
            return 0
        path = build(cfg, overwrite={s.strip() for s in args.overwrite.split(",") if s.strip()})
    except (SAEError, CorpusError, ModelLoadError, ValueError) as err:
        print(f"sae-atlas build: error: {err}", file=sys.stderr)
        return 2
    print(f"atlas written to {path}")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    """Serve the app in a streamlit child, on 127.0.0.1 unless --host opens it up."""
    env = dict(os.environ, SAE_ATLAS_PATH=str(args.atlas or default_atlas_path()))
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(REPO_ROOT / "app" / "main.py"),
        "--server.address",
        args.host,
        "--server.port",
        str(args.port),
        "--server.headless",
        "true",
    ]
    return _supervise(subprocess.Popen(cmd, env=env, cwd=REPO_ROOT))


def _supervise(child: subprocess.Popen[bytes]) -> int:
    """Wait for the server, passing SIGTERM / SIGINT on to it; never leave it running."""

    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            try:
                return child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
    finally:
        if child.poll() is None:  # left by an error here, not by a forwarded signal
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sae-atlas", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    add_build_parser(sub)
    add_explain_parser(sub)
    a = sub.add_parser("app", help="serve the Streamlit app over an atlas")
    a.add_argument("--atlas", type=Path, default=None)
    a.add_argument("--port", type=int, default=8501)
    a.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only). 0.0.0.0 opens it to "
        "the network: there is no login, and anyone who reaches the port can run the model",
    )
    args = parser.parse_args(argv)
    handlers = {"build": cmd_build, "app": cmd_app, "explain": cmd_explain}
    return handlers[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
