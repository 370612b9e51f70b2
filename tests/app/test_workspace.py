"""The workspace DB: named feature sets survive reopening, refuse bad names, and take concurrent writers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from core.store import workspace_sql
from core.workspace import Workspace, WorkspaceError, default_workspace_path


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws" / "workspace.duckdb")


def test_create_rename_delete(ws: Workspace) -> None:
    a = ws.create_set("  French   tokens ")
    b = ws.create_set("code")
    assert [(s.name, s.size) for s in ws.list_sets()] == [("code", 0), ("French tokens", 0)]
    ws.rename_set(a, "French")
    assert ws.get_set("French") is not None and ws.get_set("French tokens") is None
    ws.rename_set(a, "French")  # renaming to its own name is a no-op, not a clash
    with pytest.raises(WorkspaceError, match="already exists"):
        ws.rename_set(b, "French")
    with pytest.raises(WorkspaceError, match="already exists"):
        ws.create_set("code")
    with pytest.raises(WorkspaceError, match="needs a name"):
        ws.create_set("   ")
    ws.add_features(b, [("L3/resid_post", 1)])
    ws.delete_set(b)
    assert [s.name for s in ws.list_sets()] == ["French"]
    with pytest.raises(WorkspaceError, match="no feature set"):
        ws.add_features(b, [("L3/resid_post", 1)])


def test_members_keep_order_and_skip_duplicates(ws: Workspace) -> None:
    s = ws.create_set("s")
    keys = [("L4/mlp_out", 9), ("L3/resid_post", 2), ("L4/mlp_out", 9), ("L3/resid_post", 0)]
    assert ws.add_features(s, keys) == 3
    assert ws.add_features(s, [("L3/resid_post", 2), ("L4/attn_out", 5)]) == 1
    assert ws.members(s) == [
        ("L4/mlp_out", 9),
        ("L3/resid_post", 2),
        ("L3/resid_post", 0),
        ("L4/attn_out", 5),
    ]
    ws.remove_features(s, [("L3/resid_post", 2), ("L9/none", 1)])
    assert ws.members(s) == [("L4/mlp_out", 9), ("L3/resid_post", 0), ("L4/attn_out", 5)]
    assert ws.sets_containing("L4/mlp_out", 9) == ["s"]
    assert ws.list_sets()[0].size == 3


def test_create_with_members_is_all_or_nothing(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure while the members go in leaves no set behind, and its name stays free."""
    keys = [("L3/resid_post", 1), ("L4/mlp_out", 2)]
    insert = workspace_sql.insert_members

    def insert_then_fail(*args: object) -> None:
        insert(*args)  # type: ignore[arg-type]
        raise RuntimeError("failed while adding members")

    monkeypatch.setattr(workspace_sql, "insert_members", insert_then_fail)
    with pytest.raises(RuntimeError, match="adding members"):
        ws.create_set("lasso", keys)
    monkeypatch.undo()
    assert ws.list_sets() == []
    with pytest.raises(ValueError):
        ws.create_set("lasso", [("L3/resid_post", "not a feature")])  # type: ignore[list-item]
    assert ws.list_sets() == []
    s = ws.create_set("lasso", keys)
    assert ws.members(s) == keys and [x.name for x in ws.list_sets()] == ["lasso"]


def test_create_killed_midway_leaves_no_set(tmp_path: Path) -> None:
    """A process killed between creating a set and adding its members: after reopening, no
    empty set holds the name."""
    path = tmp_path / "workspace.duckdb"
    script = textwrap.dedent(
        f"""
        import os, signal
        from core.store import workspace_sql
        from core.workspace import Workspace
        insert = workspace_sql.insert_members
        def insert_then_die(*args):
            insert(*args)
            os.kill(os.getpid(), signal.SIGKILL)
        workspace_sql.insert_members = insert_then_die
        Workspace({str(path)!r}).create_set("lasso", [("L3/resid_post", 1)])
        """
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, timeout=120)
    assert done.returncode == -9
    ws = Workspace(path)
    assert ws.list_sets() == []
    assert ws.members(ws.create_set("lasso", [("L3/resid_post", 1)])) == [("L3/resid_post", 1)]


def test_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "workspace.duckdb"
    ws = Workspace(path)
    ws.add_features(ws.create_set("kept"), [("L3/resid_post", 7)])
    ws.close()
    again = Workspace(path)
    found = again.get_set("kept")
    assert found is not None and again.members(found.set_id) == [("L3/resid_post", 7)]


def test_concurrent_writers(ws: Workspace) -> None:
    """App sessions share one Workspace: threads adding at once lose nothing."""
    s = ws.create_set("busy")
    errors: list[BaseException] = []

    def add(t: int) -> None:
        try:
            for i in range(10):
                ws.add_features(s, [("L3/resid_post", t * 100 + i)])
                ws.list_sets()
        except BaseException as err:  # collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=add, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert len(ws.members(s)) == 40


def test_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SAE_ATLAS_WORKSPACE", raising=False)
    assert (
        default_workspace_path(tmp_path / "a" / "atlas.duckdb")
        == tmp_path / "a" / "workspace.duckdb"
    )
    monkeypatch.setenv("SAE_ATLAS_WORKSPACE", str(tmp_path / "elsewhere.duckdb"))
    assert default_workspace_path(tmp_path / "a" / "atlas.duckdb") == tmp_path / "elsewhere.duckdb"
