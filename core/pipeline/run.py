"""The build: model + SAEs + corpus → atlas.duckdb, stage by stage, resumable and idempotent.

The stages (stages.STAGES) run in order; each records itself, with its seconds and peak
memory, in the `stages` table of the temporary atlas when it completes, so a killed build
resumes where it stopped. Overwriting a stage re-runs it and everything after it. The finished
atlas is renamed into place last.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import platform
import re
import shutil
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from core.pipeline.config import BuildConfig
from core.pipeline.context import BuildContext
from core.pipeline.faults import kill_point
from core.pipeline.stages import STAGE_NAMES, STAGES
from core.pipeline.timing import StageTimer, summary
from core.store.atlas import AtlasWriter, tmp_path
from core.store.pipeline_sql import finished_stages, stage_costs
from core.store.runs import finish_run, has_run, latest_run, set_config, set_memory_limit, start_run

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
        set_config(writer.con, cfg.to_dict())  # check_resume allowed every difference
        return run.run_id, run.acts_dir
    run_id = datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    start_run(writer.con, run_id, cfg.to_dict(), versions(), f"acts-{run_id}")
    return run_id, f"acts-{run_id}"


def build(cfg: BuildConfig, overwrite: set[str] | None = None) -> Path:
    """Build (or resume, or re-run `overwrite` stages of) the atlas at cfg.out.

    Every input is checked before any file is created (BuildInputError), and a resumed build
    must be resuming the same config (ResumeMismatch); both are ValueErrors.
    """
    redo = expand_overwrite(overwrite or set())
    check_inputs(cfg)
    check_resume(cfg, redo)
    timer = StageTimer()
    writer = AtlasWriter(cfg.out_path, overwrite=redo)
    set_memory_limit(writer.con, cfg.duckdb_memory_limit)
    ctx: BuildContext | None = None
    try:
        fresh = "capture" in redo or not writer.done("capture") and not has_run(writer.con)
        run_id, acts_name = _run_state(writer, cfg, fresh)
        ctx = BuildContext.open(cfg, writer, cfg.out_path.parent, run_id, acts_name, timer)
        for name in STAGE_NAMES:
            if writer.done(name):
                print(f"[build] {name}: done earlier, skipped", file=sys.stderr)
                continue
            kill_point(f"before:{name}")
            with timer.stage(name) as cost:
                detail = STAGES[name](ctx)
            writer.finish_stage(name, cost.seconds, cost.peak_rss_mb, detail)
            kill_point(f"after:{name}")
        kill_point("before:commit")
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


# ---- checks before any file is created ------------------------------------------------------


class BuildInputError(ValueError):
    """A build input that cannot work: an unknown device, a missing model path, an unwritable out."""


class ResumeMismatch(ValueError):
    """The atlas (or the build in progress) at cfg.out was made with a different config."""


# A plausible Hugging Face hub id: 'name' or 'org/name' (letters, digits, '-', '_', '.').
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?$")


def check_inputs(cfg: BuildConfig) -> None:
    """Devices parse, the model exists (or is a plausible hub id), the out folder is writable."""
    for where, device in (
        ("model.device", cfg.model.device),
        ("explain.device", cfg.explain.device),
    ):
        _check_device(where, device)
    spec = cfg.model.spec
    if spec != "default" and not Path(spec).expanduser().exists():
        if spec.endswith(".gguf") or not _HUB_ID.match(spec):
            raise BuildInputError(f"--model {spec!r}: no such file or folder (nor a hub id)")
    _check_out(cfg.out_path)


def _check_device(where: str, device: str) -> None:
    import torch

    if device == "auto":
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise BuildInputError(
            f"{where} {device!r} is not a device: use auto, cpu, cuda, cuda:N or mps"
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BuildInputError(f"{where} {device!r}: CUDA is not available on this machine")
    mps = getattr(torch.backends, "mps", None)
    if dev.type == "mps" and not (mps and mps.is_available()):
        raise BuildInputError(f"{where} {device!r}: MPS is not available on this machine")


def _check_out(out: Path) -> None:
    """The atlas path is not a folder, and its folder exists or can be made, writable."""
    if out.is_dir():
        raise BuildInputError(
            f"--out {out}: is a folder; give the atlas file, e.g. {out}/atlas.duckdb"
        )
    existing = out.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise BuildInputError(f"--out {out}: cannot create its folder ({existing} is not a folder)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BuildInputError(f"--out {out}: the folder {existing} is not writable")


# Config fields that do not change what a stage writes: where the atlas goes, how capture is
# spread over Ray actors, and how the LLM explainer paces its calls.
IGNORED_FIELDS = frozenset(
    {"out", "ray", "keep_dense", "duckdb_memory_limit", "explain.concurrency", "explain.timeout_s",
     "explain.max_retries", "explain.api_key_env", "explain.price_in", "explain.price_out"}
)  # fmt: skip

# The first stage that reads each config section: a difference there needs that stage re-run.
_SECTION_STAGE = {
    "model": "corpus", "corpus": "corpus", "saes": "capture", "train": "train",
    "quality": "quality", "stats": "stats", "explain": "explain", "geometry": "geometry",
    "flow": "flow",
}  # fmt: skip


def config_differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """'section.field' (or 'section') of every compared field whose value differs, compared as
    JSON (a stored tuple reads back as a list)."""
    stored, wanted = json.loads(json.dumps(stored)), json.loads(json.dumps(wanted))
    out = []
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key), wanted.get(key)
        if key in IGNORED_FIELDS or a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [
                f"{key}.{k}"
                for k in sorted(set(a) | set(b))
                if a.get(k) != b.get(k) and f"{key}.{k}" not in IGNORED_FIELDS
            ]
        else:
            out.append(key)
    return out


def check_resume(cfg: BuildConfig, redo: set[str]) -> None:
    """Refuse to resume (or reuse the stages of) an atlas made with a different config.

    A difference is allowed only in a section whose stage is re-run now, or has not finished
    and has left no partial side files (capture, train and encode leave them once started).
    """
    stored, done = _stored_state(cfg.out_path)
    if stored is None:
        return
    stages = {key: _SECTION_STAGE.get(key.split(".")[0], "corpus") for key in
              config_differences(stored, cfg.to_dict())}  # fmt: skip
    differing = [
        key
        for key, stage in stages.items()
        if stage not in redo and (stage in done or _side_files_started(stage, done))
    ]
    if differing:
        first = min((stages[k] for k in differing), key=STAGE_NAMES.index)
        redo_hint = (
            "" if first == "corpus" else f"--overwrite {first} to re-run from that stage, or "
        )
        raise ResumeMismatch(
            f"{cfg.out_path} was built with a different config (differs in: "
            f"{', '.join(differing)}); pass {redo_hint}--overwrite corpus to start over"
        )


def _side_files_started(stage: str, done: set[str]) -> bool:
    """A side-file stage leaves partial files once the stage before it has finished."""
    i = STAGE_NAMES.index(stage)
    return stage in _SIDE_FILE_STAGES and i > 0 and STAGE_NAMES[i - 1] in done


def _stored_state(out: Path) -> tuple[dict[str, Any] | None, set[str]]:
    """(stored config, finished stages) of the build in progress, else of the finished atlas."""
    path = tmp_path(out) if tmp_path(out).exists() else out
    if not path.exists():
        return None, set()
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as err:
        raise BuildInputError(f"cannot read {path} to resume it: {err}") from err
    try:
        run = latest_run(con)
        done = finished_stages(con)
    except duckdb.Error as err:
        raise BuildInputError(
            f"{path} is not an atlas this build can resume ({str(err).splitlines()[0]}); "
            "move it away or give another --out"
        ) from err
    finally:
        con.close()
    return (run.config if run else None), done
