"""CSV export under hostile cell text: every cell parses back as one cell of its own row, and no
parsed cell, nor any line inside one, starts with a formula character without the quote guard."""

from __future__ import annotations

import csv
import io
import json

import pandas as pd
import pytest

from core import export

FORMULA = ("=", "+", "-", "@")

HOSTILE = [
    "x\r=1+1",  # a bare CR: used to end the row, leaving `=1+1` as the next row's first cell
    "x\n=1+1",
    "x\r\n=1+1",
    "x\r\r@SUM(A1)",
    "\r=cmd|' /C calc'!A0",
    "a,b\r+1",
    'say "hi"\n-2',
    '=HYPERLINK("http://x")',
    "\t=1",
    "plain words, with a comma",
    "line one\nline two",
]


def _frame(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sae_id": "L3/resid_post",
            "feature": range(len(texts)),
            "explanation": texts,
            "density": 0.5,
            "top_tokens": [[t, "ok"] for t in texts],
        }
    )


def _parse(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def _unguard(cell: str) -> str:
    """The text the guard protected: drop the quote it put at the cell start and after breaks."""
    out = cell[1:] if cell.startswith("'") else cell
    for brk in ("\r\n", "\r", "\n"):
        out = out.replace(brk + "'", brk)
    return out


def test_each_feature_is_one_row_of_its_own_cells() -> None:
    rows = _parse(export.to_csv_bytes(_frame(HOSTILE)))
    header, body = rows[0], rows[1:]
    assert header == ["sae_id", "feature", "explanation", "density", "top_tokens"]
    assert len(body) == len(HOSTILE)
    assert all(len(r) == len(header) for r in body)
    assert [r[1] for r in body] == [str(i) for i in range(len(HOSTILE))]


def test_no_line_of_any_cell_starts_a_formula() -> None:
    for row in _parse(export.to_csv_bytes(_frame(HOSTILE))):
        for cell in row:
            lines = cell.replace("\r\n", "\n").replace("\r", "\n").split("\n")
            assert not any(line.startswith(FORMULA) for line in lines), repr(cell)


def test_cells_round_trip_under_the_guard() -> None:
    """The guard only adds quotes: removing them gives back the exact text, CRs included."""
    body = _parse(export.to_csv_bytes(_frame(HOSTILE)))[1:]
    assert [_unguard(r[2]) for r in body] == HOSTILE
    assert [json.loads(r[4]) for r in body] == [[t, "ok"] for t in HOSTILE]


@pytest.mark.parametrize("text", ["x\r=1+1", "x\n=1+1", "a,b", 'q"q', "x\r\ny"])
def test_cells_with_breaks_delimiters_or_quotes_are_quoted(text: str) -> None:
    raw = export.to_csv_bytes(_frame([text])).decode("utf-8")
    line = raw.split("\r\n", 1)[1]
    guarded = export.neutralise(text).replace('"', '""')
    assert line.startswith(f'L3/resid_post,0,"{guarded}",'), repr(line)


def test_bare_cr_no_longer_makes_a_row() -> None:
    """The reported case, read back line by line as a naive reader would."""
    raw = export.to_csv_bytes(_frame(["x\r=1+1"]))
    rows = _parse(raw)
    assert len(rows) == 2
    assert rows[1][2] == "x\r'=1+1"
    naive = [r for r in csv.reader(raw.decode("utf-8").splitlines()) if r]
    assert not any(cell.startswith(FORMULA) for r in naive for cell in r)
