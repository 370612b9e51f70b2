"""stage_flow writes all four flow tables into the atlas being built."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from core.flow.stage import stage_flow
from core.model.sites import Site
from core.sae.model import SAE, SAEConfig
from core.store.atlas import AtlasWriter, sae_dir_name

SITES = [Site(0, "resid_post"), Site(1, "resid_post"), Site(1, "mlp_out")]


def _sae(site: Site, w_dec: torch.Tensor) -> SAE:
    sae = SAE(SAEConfig(d_in=w_dec.shape[1], d_sae=w_dec.shape[0], k=2, hook_name=site.id))
    with torch.no_grad():
        sae.W_dec.copy_(w_dec * 3.0)  # not unit norm: matching must normalise
    return sae


def _write_acts(folder: Path, rng: np.random.Generator) -> None:
    """Feature f of every SAE fires on tokens where token % 16 == f (matched pairs co-fire)."""
    tok = np.arange(800)
    for site in SITES:
        out = folder / sae_dir_name(site.id)
        out.mkdir(parents=True)
        table = pa.table(
            {
                "sae_id": [site.id] * len(tok),
                "doc_id": (tok // 100).astype(np.int32),
                "pos": (tok % 100).astype(np.int32),
                "feature": (tok % 16).astype(np.int32),
                "act": rng.random(len(tok), dtype=np.float32),
            }
        )
        pq.write_table(table, out / "part-00000.parquet")


def test_stage_writes_tables(tmp_path: Path) -> None:
    q = torch.linalg.qr(torch.randn(48, 48))[0].T  # orthonormal rows
    r0, m1 = q[:16], q[16:32]
    r1 = torch.cat([r0[:10], m1[10:]])  # 10 carried, 6 MLP-born; feature f matches feature f
    saes = {s: _sae(s, w) for s, w in zip(SITES, (r0, r1, m1), strict=True)}
    _write_acts(tmp_path / "acts", np.random.default_rng(0))
    writer = AtlasWriter(tmp_path / "atlas.duckdb")
    ctx = SimpleNamespace(
        cfg=SimpleNamespace(), writer=writer, acts_dir=tmp_path / "acts", saes=saes, sites=SITES
    )
    detail = stage_flow(ctx)  # type: ignore[arg-type]
    assert detail["class_shares"]["L1/resid_post"] == {"translated": 0.625, "newborn": 0.375}
    con = writer.con
    n = {
        t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
        for t in ("flow_edges", "flow_classes", "flow_score_hist", "flow_validation")
    }
    assert n == {
        "flow_edges": 2 * 2 * 16 * 5,
        "flow_classes": 32,
        "flow_score_hist": 4 * 50,
        "flow_validation": 4,
    }
    val = con.execute("SELECT * FROM flow_validation WHERE series = 'matched'").df()
    assert (val["share_cofire"] == 1.0).all()
    writer.close()
