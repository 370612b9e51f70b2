"""`sae-atlas`: build an atlas, serve the app, run the benchmark."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from core.explain.cli import add_explain_parser, cmd_explain
from core.paths import REPO_ROOT, default_atlas_path


def _build_parser(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("build", help="build an atlas (default: the offline SmolLM2 profile)")
    b.add_argument("--profile", choices=["default", "tiny"], default="default")
    b.add_argument(
        "--out",
        type=Path,
        default=None,
        help="atlas file (default data/atlases/default/atlas.duckdb)",
    )
    b.add_argument("--model", default=None, help="'default', a folder, a .gguf file or a hub id")
    b.add_argument(
        "--corpus", default=None, help="'default', txt/jsonl/parquet file or folder, hf:<name>"
    )
    b.add_argument(
        "--tokens", type=int, default=None, help="corpus tokens to run through the model"
    )
    b.add_argument(
        "--sae",
        action="append",
        default=[],
        metavar="SITE[=PATH]",
        help="an SAE site, e.g. L12/resid_post=path/to/sae (no PATH: train one); repeatable",
    )
    b.add_argument(
        "--sae-format", default=None, help="saelens | sparsify | gemmascope | llamascope"
    )
    b.add_argument("--d-sae", type=int, default=None, help="latents of trained SAEs")
    b.add_argument("--k", type=int, default=None, help="k of trained TopK SAEs")
    b.add_argument("--device", default=None, help="auto | cpu | cuda | mps")
    b.add_argument(
        "--overwrite", default="", help="comma-separated stages to re-run (and all after)"
    )


def _config(args: argparse.Namespace):  # noqa: ANN202
    from core.build.config import SaeSpec, default_profile, tiny_profile

    out = str(args.out or default_atlas_path())
    cfg = default_profile(out) if args.profile == "default" else tiny_profile(out)
    if args.model:
        cfg.model.spec = args.model
    if args.corpus:
        cfg.corpus.spec = args.corpus
    if args.tokens:
        cfg.corpus.n_tokens = args.tokens
    if args.device:
        cfg.model.device = args.device
    if args.d_sae:
        cfg.train.d_sae = args.d_sae
    if args.k:
        cfg.train.k = args.k
    if args.sae:
        cfg.saes = []
        for item in args.sae:
            site, _, path = item.partition("=")
            cfg.saes.append(SaeSpec(site=site, path=path or None, format=args.sae_format))
    return cfg


def cmd_build(args: argparse.Namespace) -> int:
    from core.build.pipeline import build
    from core.corpus import CorpusError
    from core.model.sites import SiteError
    from core.sae.model import SAEError

    cfg = _config(args)
    stages = {s.strip() for s in args.overwrite.split(",") if s.strip()}
    try:
        path = build(cfg, overwrite=stages)
    except (SAEError, SiteError, CorpusError, ValueError) as err:
        print(f"sae-atlas build: error: {err}", file=sys.stderr)
        return 2
    print(f"atlas written to {path}")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    env = dict(os.environ, SAE_ATLAS_PATH=str(args.atlas or default_atlas_path()))
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(REPO_ROOT / "app" / "main.py"),
        "--server.port",
        str(args.port),
        "--server.headless",
        "true",
    ]
    return subprocess.call(cmd, env=env, cwd=REPO_ROOT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sae-atlas", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    _build_parser(sub)
    add_explain_parser(sub)
    a = sub.add_parser("app", help="serve the Streamlit app over an atlas")
    a.add_argument("--atlas", type=Path, default=None)
    a.add_argument("--port", type=int, default=8501)
    args = parser.parse_args(argv)
    handlers = {"build": cmd_build, "app": cmd_app, "explain": cmd_explain}
    return handlers[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
