"""Builders for planted flow structure: orthonormal directions and an in-memory atlas."""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import pandas as pd
import pytest
import torch

from core.store import schema


@pytest.fixture
def basis() -> Callable[[int], torch.Tensor]:
    """basis(d) -> (d, d) random orthonormal rows: directions exactly orthogonal to each other."""

    def make(d: int) -> torch.Tensor:
        q, _ = torch.linalg.qr(torch.randn(d, d))
        return q.T.contiguous()

    return make


@pytest.fixture
def flow_db() -> Callable[[dict[str, pd.DataFrame]], duckdb.DuckDBPyConnection]:
    """flow_db(tables) -> in-memory DuckDB with the atlas schema and the frames inserted by name."""

    def make(tables: dict[str, pd.DataFrame]) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        for stmt in schema.create_statements():
            con.execute(stmt)
        for name, df in tables.items():
            con.register("_frame", df)
            con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM _frame")
            con.unregister("_frame")
        return con

    return make
