"""`sae-atlas explain`: (re)explain a chosen subset of an existing atlas with a chosen back-end.

The finished atlas is never modified in place: the run writes into a copy through AtlasWriter
(atlas.duckdb.tmp) and renames it over the atlas only when it has finished.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import duckdb

from core.explain.config import EXPLAINERS, ExplainConfig
from core.store import explain_sql as sql
from core.store.atlas import AtlasWriter, define_activations_view
from core.workspace import default_workspace_path


def add_explain_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("explain", help="(re)explain and score features of a built atlas")
    p.add_argument(
        "--atlas", type=Path, default=None, help="atlas file (default: the default atlas)"
    )
    p.add_argument(
        "--features",
        default=None,
        metavar="top-N | SAE:F,F,...",
        help="top-N: the N densest features of each chosen SAE; or explicit ids",
    )
    p.add_argument(
        "--set",
        dest="feature_set",
        default=None,
        metavar="NAME",
        help="a named feature set of the app's workspace",
    )
    p.add_argument(
        "--workspace",
        type=Path,
        default=None,
        help="workspace DuckDB of the app's sets (default: as the app: $SAE_ATLAS_WORKSPACE or "
        "workspace.duckdb beside the atlas)",
    )
    p.add_argument(
        "--sae", action="append", default=[], metavar="ID", help="restrict to an SAE; repeatable"
    )
    p.add_argument("--explainer", choices=EXPLAINERS, default="statistical")
    p.add_argument(
        "--base-url", default=None, help="OpenAI-compatible endpoint (default $OPENAI_BASE_URL)"
    )
    p.add_argument("--model", default=None, help="chat model (openai) or model spec (local)")
    p.add_argument(
        "--api-key-env", default="OPENAI_API_KEY", help="environment variable with the key"
    )
    p.add_argument("--concurrency", type=int, default=8, help="simultaneous requests")
    p.add_argument(
        "--device", default="auto", help="auto | cpu | cuda | mps (embeddings, local model)"
    )
    p.add_argument("--no-llm-scores", action="store_true", help="skip detection/fuzzing scoring")
    p.add_argument(
        "--price-in", type=float, default=0.0, help="USD per 1M prompt tokens (cost summary)"
    )
    p.add_argument("--price-out", type=float, default=0.0, help="USD per 1M completion tokens")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="re-explain features that already have an explanation from this back-end",
    )


def config_from_args(args: argparse.Namespace) -> ExplainConfig:
    return ExplainConfig(
        explainer=args.explainer,
        base_url=args.base_url,
        model=args.model,
        api_key_env=args.api_key_env,
        concurrency=args.concurrency,
        device=args.device,
        llm_scores=not args.no_llm_scores,
        price_in=args.price_in,
        price_out=args.price_out,
    )


def select_features(
    con: duckdb.DuckDBPyConnection, args: argparse.Namespace, atlas: Path
) -> tuple[list[str], dict[str, list[int]] | None]:
    """(SAEs, features per SAE or None for all) from --sae / --features / --set."""
    known = sql.sae_ids(con)
    saes = args.sae or known
    unknown = sorted(set(saes) - set(known))
    if unknown:
        raise ValueError(f"unknown SAE(s) {unknown}; the atlas has {', '.join(known)}")
    if args.feature_set:
        ws = args.workspace or default_workspace_path(atlas)
        return _from_set(ws, args.feature_set, saes)
    spec = args.features
    if not spec:
        return saes, None
    if spec.startswith("top-"):
        df = sql.top_by_density(con, int(spec.removeprefix("top-")), saes)
        return saes, _group(df)
    sae_id, _, ids = spec.rpartition(":")
    if sae_id not in known:
        raise ValueError(
            f"--features: expected top-N or SAE:F,F,... with a known SAE, got {spec!r}"
        )
    return [sae_id], {sae_id: [int(x) for x in ids.split(",") if x.strip()]}


def _from_set(
    workspace: Path, name: str, saes: list[str]
) -> tuple[list[str], dict[str, list[int]]]:
    """The members of the app's feature set `name` (core.workspace schema), read-only."""
    if not workspace.exists():
        raise ValueError(f"no workspace at {workspace} (pass --workspace)")
    try:
        con = duckdb.connect(str(workspace), read_only=True)
    except duckdb.Error as e:  # e.g. the app holds it open for writing
        raise ValueError(f"cannot open the workspace {workspace}: {e}") from e
    try:
        df = con.execute(
            "SELECT DISTINCT m.sae_id, m.feature FROM set_members m "
            "JOIN feature_sets s USING (set_id) WHERE s.name = ?",
            [name],
        ).df()
    except duckdb.Error as e:
        raise ValueError(f"cannot read feature set {name!r} from {workspace}: {e}") from e
    finally:
        con.close()
    if df.empty:
        raise ValueError(f"feature set {name!r} is empty or does not exist in {workspace}")
    df = df[df["sae_id"].isin(saes)]
    return sorted(df["sae_id"].unique()), _group(df)


def _group(df: Any) -> dict[str, list[int]]:
    return {str(s): sorted(int(f) for f in g["feature"]) for s, g in df.groupby("sae_id")}


def cmd_explain(args: argparse.Namespace) -> int:
    from core.explain.embeddings import EmbedderUnavailable
    from core.explain.stage import explain_atlas
    from core.model.loading import ModelLoadError
    from core.paths import default_atlas_path

    atlas = Path(args.atlas or default_atlas_path())
    if not atlas.exists():
        print(f"sae-atlas explain: error: no atlas at {atlas}", file=sys.stderr)
        return 2
    if atlas.with_name(atlas.name + ".tmp").exists():
        print(
            f"sae-atlas explain: error: {atlas}.tmp exists (a build in progress or interrupted); "
            "finish it with `sae-atlas build` or remove it first",
            file=sys.stderr,
        )
        return 2
    writer = AtlasWriter(atlas)
    try:
        cfg = config_from_args(args)
        acts = sql.acts_dir(writer.con)
        define_activations_view(
            writer.con, str(atlas.parent / acts / "*" / "*.parquet") if acts else None
        )
        saes, features = select_features(writer.con, args, atlas)
        result = explain_atlas(writer, cfg, saes, features, overwrite=args.overwrite)
        path = writer.commit()
    except (ValueError, OSError, EmbedderUnavailable, ModelLoadError) as err:
        writer.close()
        writer.tmp.unlink(missing_ok=True)
        print(f"sae-atlas explain: error: {err}", file=sys.stderr)
        return 2
    except BaseException:
        writer.close()
        writer.tmp.unlink(missing_ok=True)
        raise
    print(json.dumps(result, indent=1))
    print(f"explanations written to {path}")
    return 0
