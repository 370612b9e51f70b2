"""The build: model + SAEs + corpus → atlas.duckdb, stage by stage, resumable and idempotent.

Stages (config.STAGES) run in order; each records itself in the `stages` table of the
temporary atlas when it completes, so a killed build resumes where it stopped. Overwriting a
stage re-runs it and everything after it. The finished atlas is renamed into place last.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from core.build import steps
from core.build.config import STAGES, BuildConfig
from core.store.atlas import AtlasWriter

# Re-running any of these means a fresh forward pass into fresh side folders, so the
# finished atlas that still points at the old ones is never touched.
_SIDE_FILE_STAGES = ("capture", "train", "encode")


def expand_overwrite(requested: set[str]) -> set[str]:
    """A stage re-runs with everything downstream of it."""
    unknown = requested - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages are {', '.join(STAGES)}")
    if not requested:
        return set()
    first = min(STAGES.index(s) for s in requested)
    if any(s in _SIDE_FILE_STAGES for s in requested):
        first = min(first, STAGES.index("capture"))
    return set(STAGES[first:])


class Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def summary(self) -> str:
        total = sum(self.seconds.values()) or 1.0
        lines = [f"  {k:<12} {v:8.1f}s  {100 * v / total:5.1f}%" for k, v in self.seconds.items()]
        return "where the time went:\n" + "\n".join(lines) + f"\n  {'total':<12} {total:8.1f}s"


def _run_state(writer: AtlasWriter, cfg: BuildConfig, fresh: bool) -> tuple[str, str]:
    """(run_id, acts_dir) of the build in progress; a new run when side files must be redone."""
    row = writer.con.execute(
        "SELECT run_id, acts_dir FROM runs ORDER BY created DESC LIMIT 1"
    ).fetchone()
    if row and not fresh:
        return row[0], row[1]
    run_id = datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    writer.con.execute("DELETE FROM runs")
    writer.con.execute(
        "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            run_id,
            datetime.now(),
            json.dumps(cfg.to_dict()),
            json.dumps(steps.versions()),
            "{}",
            f"acts-{run_id}",
            1,
        ],
    )
    return run_id, f"acts-{run_id}"


def build(cfg: BuildConfig, overwrite: set[str] | None = None) -> Path:
    redo = expand_overwrite(overwrite or set())
    timer = Timer()
    writer = AtlasWriter(cfg.out_path, overwrite=redo)
    try:
        fresh = "capture" in redo or not writer.done("capture") and not _has_run(writer)
        run_id, acts_name = _run_state(writer, cfg, fresh)
        ctx = steps.BuildContext.open(cfg, writer, cfg.out_path.parent, run_id, acts_name, timer)
        for stage in STAGES:
            if writer.done(stage):
                print(f"[build] {stage}: done earlier, skipped", file=sys.stderr)
                continue
            t0 = time.perf_counter()
            with timer.stage(stage):
                detail = getattr(steps, f"stage_{stage}")(ctx)
            writer.finish_stage(stage, time.perf_counter() - t0, detail)
        writer.con.execute(
            "UPDATE runs SET timings = ?, config = ?",
            [json.dumps(timer.seconds), json.dumps(cfg.to_dict())],
        )
        path = writer.commit()
    except BaseException:
        writer.close()  # the temporary atlas stays for resuming; the finished one is untouched
        raise
    _collect_garbage(cfg.out_path.parent, keep=acts_name, run_id=run_id, keep_dense=cfg.keep_dense)
    print(timer.summary(), file=sys.stderr)
    return path


def _has_run(writer: AtlasWriter) -> bool:
    return writer.con.execute("SELECT count(*) FROM runs").fetchone()[0] > 0  # type: ignore[index]


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
