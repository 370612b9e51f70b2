"""The build: model + SAEs + corpus → atlas.duckdb, stage by stage, resumable and idempotent.

The stages (stages.STAGES) run in order; each records itself, with its seconds and peak
memory, in the `stages` table of the temporary atlas when it completes, so a killed build
resumes where it stopped. Overwriting a stage re-runs it and everything after it. The finished
atlas is renamed into place last.
"""

from __future__ import annotations

import importlib.metadata as md
import platform
import shutil
import sys
import uuid
from datetime import datetime
from pathlib import Path

from core.pipeline.config import BuildConfig
from core.pipeline.context import BuildContext
from core.pipeline.stages import STAGE_NAMES, STAGES
from core.pipeline.timing import StageTimer, summary
from core.store.atlas import AtlasWriter
from core.store.pipeline_sql import stage_costs
from core.store.runs import finish_run, has_run, latest_run, start_run

# Re-running any of these means a fresh forward pass into fresh side folders, so the
# finished atlas that still points at the old ones is never touched.
_SIDE_FILE_STAGES = ("capture", "train", "encode")


def expand_overwrite(requested: set[str]) -> set[str]:
    """A stage re-runs with everything downstream of it."""
    unknown = requested - set(STAGE_NAMES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages are {', '.join(STAGE_NAMES)}")
    if not requested:
        return set()
    first = min(STAGE_NAMES.index(s) for s in requested)
    if any(s in _SIDE_FILE_STAGES for s in requested):
        first = min(first, STAGE_NAMES.index("capture"))
    return set(STAGE_NAMES[first:])


def versions() -> dict[str, str]:
    pkgs = ["torch", "transformers", "duckdb", "numpy", "pandas", "sae-atlas"]
    out = {"python": platform.python_version()}
    for p in pkgs:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            pass
    return out


def _run_state(writer: AtlasWriter, cfg: BuildConfig, fresh: bool) -> tuple[str, str]:
    """(run_id, acts_dir) of the build in progress; a new run when side files must be redone."""
    run = latest_run(writer.con)
    if run is not None and run.acts_dir is not None and not fresh:
        return run.run_id, run.acts_dir
    run_id = datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    start_run(writer.con, run_id, cfg.to_dict(), versions(), f"acts-{run_id}")
    return run_id, f"acts-{run_id}"


def build(cfg: BuildConfig, overwrite: set[str] | None = None) -> Path:
    redo = expand_overwrite(overwrite or set())
    timer = StageTimer()
    writer = AtlasWriter(cfg.out_path, overwrite=redo)
    ctx: BuildContext | None = None
    try:
        fresh = "capture" in redo or not writer.done("capture") and not has_run(writer.con)
        run_id, acts_name = _run_state(writer, cfg, fresh)
        ctx = BuildContext.open(cfg, writer, cfg.out_path.parent, run_id, acts_name, timer)
        for name in STAGE_NAMES:
            if writer.done(name):
                print(f"[build] {name}: done earlier, skipped", file=sys.stderr)
                continue
            with timer.stage(name) as cost:
                detail = STAGES[name](ctx)
            writer.finish_stage(name, cost.seconds, cost.peak_rss_mb, detail)
        finish_run(writer.con, timer.seconds, cfg.to_dict())
        earlier = stage_costs(writer.con)
        path = writer.commit()
    except BaseException:
        writer.close()  # the temporary atlas stays for resuming; the finished one is untouched
        raise
    finally:
        if ctx is not None:
            ctx.close()
    _collect_garbage(cfg.out_path.parent, keep=acts_name, run_id=run_id, keep_dense=cfg.keep_dense)
    print(summary(timer.costs, earlier), file=sys.stderr)
    return path


def _collect_garbage(folder: Path, keep: str, run_id: str, keep_dense: bool) -> None:
    """Remove side folders of earlier runs that the committed atlas no longer references."""
    for side in folder.glob("acts-*"):
        if side.name != keep:
            shutil.rmtree(side, ignore_errors=True)
    for side in folder.glob("saes-*"):
        if side.name != f"saes-{run_id}":
            shutil.rmtree(side, ignore_errors=True)
    for side in folder.glob("work-*"):
        if keep_dense and side.name == f"work-{run_id}":
            continue
        shutil.rmtree(side, ignore_errors=True)
