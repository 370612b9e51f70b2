"""Saved steers: settings and outputs of a steering run, kept in the workspace DuckDB.

The table (core/store/workspace_sql.py) lives beside the feature sets and is created on first use.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from core.steering.generate import SamplingConfig
from core.steering.interventions import Intervention
from core.store import workspace_sql as sql
from core.workspace import Workspace, WorkspaceError

MAX_NAME = 200


@dataclass
class SavedSteer:
    name: str
    prompt: str
    sampling: SamplingConfig
    interventions: list[Intervention]
    texts: tuple[str, str]
    measures: dict[str, Any] = field(default_factory=dict)
    """Plain numbers: kl_prompt_end, perplexity, per-feature activations."""
    url: str = ""
    """The Steering page's shareable query string for these settings."""
    steer_id: int | None = None
    created: datetime | None = None


def _ensure(ws: Workspace) -> None:
    with ws.cursor() as cur:
        sql.create_tables(cur, sql.STEER_SCHEMA)


def save_steer(ws: Workspace, steer: SavedSteer) -> int:
    """Store a steer; returns its id. Names need not be unique (they are labels)."""
    name = " ".join(steer.name.split())
    if not name:
        raise WorkspaceError("a saved steer needs a name")
    if len(name) > MAX_NAME:
        raise WorkspaceError(f"names are at most {MAX_NAME} characters")
    _ensure(ws)
    row = [
        name,
        datetime.now(),
        steer.prompt,
        json.dumps(asdict(steer.sampling)),
        json.dumps([i.to_dict() for i in steer.interventions]),
        steer.texts[0],
        steer.texts[1],
        json.dumps(steer.measures, default=float),
        steer.url,
    ]
    with ws.cursor() as cur:
        return sql.insert_steer(cur, row)


def list_steers(ws: Workspace) -> pd.DataFrame:
    """steer_id, name, created, prompt, url — newest first."""
    _ensure(ws)
    with ws.cursor() as cur:
        return sql.list_steers(cur)


def load_steer(ws: Workspace, steer_id: int) -> SavedSteer:
    _ensure(ws)
    with ws.cursor() as cur:
        row = sql.steer_row(cur, steer_id)
    if row is None:
        raise WorkspaceError(f"no saved steer with id {steer_id}")
    name, prompt, sampling, items, t0, t1, measures, url, created = row
    return SavedSteer(
        name=name,
        prompt=prompt,
        sampling=_sampling(json.loads(sampling)),
        interventions=[Intervention.from_dict(d) for d in json.loads(items)],
        texts=(t0, t1),
        measures=json.loads(measures) if measures else {},
        url=url or "",
        steer_id=int(steer_id),
        created=created,
    )


def _sampling(d: dict[str, Any]) -> SamplingConfig:
    return SamplingConfig(
        **{k: v for k, v in d.items() if k in SamplingConfig.__dataclass_fields__}
    )


def delete_steer(ws: Workspace, steer_id: int) -> None:
    _ensure(ws)
    with ws.cursor() as cur:
        sql.delete_steer(cur, steer_id)
