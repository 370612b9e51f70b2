"""Two app processes on one atlas share its workspace: both write feature sets at the same time,
neither sees a lock error, and every set and member each wrote is there afterwards."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]

WRITER = """
import sys
from pathlib import Path
from core.workspace import Workspace

ws = Workspace(Path(sys.argv[1]))
tag = sys.argv[2]
for i in range(15):
    set_id = ws.create_set(f"{tag} {i}", [("L3/resid_post", i)])
    ws.add_features(set_id, [("L4/resid_post", i), ("L4/mlp_out", i)])
    assert len(ws.list_sets()) >= i + 1
print("ok", tag)
"""


def test_two_processes_write_one_workspace(tmp_path: Path) -> None:
    path = tmp_path / "workspace.duckdb"
    Workspace(path)  # the file exists before both start, as beside a served atlas
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), tag],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("first", "second")
    ]
    results = [p.communicate(timeout=240) for p in procs]
    for p, tag, (out, err) in zip(procs, ("first", "second"), results, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert out == f"ok {tag}\n"
        assert "Could not set lock" not in err
    ws = Workspace(path)
    sets = ws.list_sets()
    assert sorted(s.name for s in sets) == sorted(
        f"{tag} {i}" for tag in ("first", "second") for i in range(15)
    )
    assert all(s.size == 3 for s in sets)
    one = ws.get_set("second 7")
    assert one is not None
    assert ws.members(one.set_id) == [("L3/resid_post", 7), ("L4/resid_post", 7), ("L4/mlp_out", 7)]
