"""The train stage's log lives in `saes.train_log` and survives a build killed between the train
and quality stages; every stage records its seconds and peak memory."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from core.pipeline.config import SaeSpec, tiny_profile
from core.pipeline.run import build
from core.pipeline.stages import STAGE_NAMES, STAGES
from core.store.atlas import tmp_path as tmp_atlas_path


class _Killed(Exception):
    """Stands in for a build killed as the stage after `train` starts."""


def _killed(ctx: object) -> dict:
    raise _Killed


def _train_logs(path: Path) -> dict[str, str | None]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return dict(con.execute("SELECT sae_id, train_log FROM saes ORDER BY sae_id").fetchall())
    finally:
        con.close()


def test_train_log_survives_a_resume_between_train_and_quality(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "atlas.duckdb"
    cfg = tiny_profile(str(out))
    cfg.saes = [SaeSpec("L3/resid_post"), SaeSpec("L4/resid_post")]
    cfg.corpus.n_tokens = 3000
    after_train = STAGE_NAMES[STAGE_NAMES.index("train") + 1]
    with monkeypatch.context() as m:
        m.setitem(STAGES, after_train, _killed)
        with pytest.raises(_Killed):
            build(cfg)
    assert not out.exists()
    logs = _train_logs(tmp_atlas_path(out))  # the partial rows the train stage wrote
    assert sorted(logs) == ["L3/resid_post", "L4/resid_post"]
    for log in logs.values():
        assert log is not None
        parsed = json.loads(log)
        assert parsed["n_tokens"] > 0 and parsed["tokens_per_s"] > 0
        assert 0.0 <= parsed["dead_frac"] <= 1.0

    capsys.readouterr()
    build(cfg)  # resumes: train is not re-run, quality reads the logs from `saes`
    err = capsys.readouterr().err
    assert "[build] train: done earlier, skipped" in err
    assert _train_logs(out) == logs

    con = duckdb.connect(str(out), read_only=True)
    rows = con.execute("SELECT sae_id, fvu, d_sae FROM saes ORDER BY sae_id").fetchall()
    assert [(r[0], r[2]) for r in rows] == [("L3/resid_post", 256), ("L4/resid_post", 256)]
    assert all(r[1] is not None for r in rows)
    costs = con.execute("SELECT stage, seconds, peak_rss_mb FROM stages").fetchall()
    con.close()
    assert sorted(c[0] for c in costs) == sorted(STAGE_NAMES)
    assert all(c[1] >= 0 and c[2] is not None and c[2] > 50 for c in costs)
    # the end-of-build summary lists every stage, those of the first (killed) build marked
    for stage in STAGE_NAMES:
        line = next(ln for ln in err.splitlines() if ln.strip().startswith(stage + " "))
        assert " MB" in line
        assert ("(earlier run)" in line) == (STAGE_NAMES.index(stage) <= STAGE_NAMES.index("train"))
