"""`sae-atlas explain`: (re)explain a chosen subset of an existing atlas with a chosen back-end.

The finished atlas is never modified in place: the run writes into a copy through AtlasWriter
(atlas.duckdb.tmp) and renames it over the atlas only when it has finished.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import duckdb

from core.config_help import add_field_option
from core.explain.config import EMBED_DTYPES, EXPLAINERS, ExplainConfig
from core.store import explain_sql as sql
from core.store.atlas import AtlasWriter
from core.store.runs import define_activations_view, latest_run
from core.workspace import default_workspace_path


def add_explain_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "explain",
        help="(re)explain and score features of a built atlas",
        description="(Re)explain and score a chosen subset of an atlas's features. The options "
        "after the selection set the fields of the explain config.",
    )
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
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="re-explain features that already have an explanation from this back-end",
    )
    group = p.add_argument_group("explain config")
    choices = {"explainer": EXPLAINERS, "embed_dtype": EMBED_DTYPES}
    for f in fields(ExplainConfig):
        add_field_option(group, ExplainConfig, f.name, choices=choices.get(f.name))


def config_from_args(args: argparse.Namespace) -> ExplainConfig:
    """The explain config the options set; ValueError for impossible values."""
    return ExplainConfig(**{f.name: getattr(args, f.name) for f in fields(ExplainConfig)})


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
        n = spec.removeprefix("top-")
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"--features: expected top-N with N >= 1, got {spec!r}")
        return saes, _group(sql.top_by_density(con, int(n), saes))
    sae_id, _, ids = spec.rpartition(":")
    if sae_id not in known:
        raise ValueError(
            f"--features: expected top-N or SAE:F,F,... with a known SAE, got {spec!r}"
        )
    return [sae_id], {sae_id: [int(x) for x in ids.split(",") if x.strip()]}


def _from_set(
    workspace: Path, name: str, saes: list[str]
) -> tuple[list[str], dict[str, list[int]]]:
    """The members of the app's feature set `name`, read-only from the workspace file."""
    if not workspace.exists():
        raise ValueError(f"no workspace at {workspace} (pass --workspace)")
    try:
        con = duckdb.connect(str(workspace), read_only=True)
    except duckdb.Error as e:  # e.g. the app holds it open for writing
        raise ValueError(f"cannot open the workspace {workspace}: {e}") from e
    try:
        df = sql.feature_set_members(con, name)
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
    try:
        cfg = config_from_args(args)  # checked before the atlas is copied
    except ValueError as err:
        return _error(str(err))
    if not atlas.exists():
        return _error(f"no atlas at {atlas}")
    if atlas.with_name(atlas.name + ".tmp").exists():
        return _error(
            f"{atlas}.tmp exists (a build in progress or interrupted); "
            "finish it with `sae-atlas build` or remove it first"
        )
    writer = AtlasWriter(atlas)
    try:
        run = latest_run(writer.con)
        acts = run.acts_dir if run else None
        define_activations_view(writer.con, atlas.parent / acts if acts else None)
        saes, features = select_features(writer.con, args, atlas)
        result = explain_atlas(writer, cfg, saes, features, overwrite=args.overwrite)
        path = writer.commit()
    except (ValueError, OSError, EmbedderUnavailable, ModelLoadError) as err:
        writer.close()
        writer.tmp.unlink(missing_ok=True)
        return _error(str(err))
    except BaseException:
        writer.close()
        writer.tmp.unlink(missing_ok=True)
        raise
    print(json.dumps(result, indent=1))
    print(f"explanations written to {path}")
    return 0


def _error(message: str) -> int:
    print(f"sae-atlas explain: error: {message}", file=sys.stderr)
    return 2
