"""Single-layer vs whole-chain steering of one concept (METHODS §6), measured on the atlas.

Picks the residual feature most specific to a corpus source (default: French Wikipedia) at the
chain's first layer, follows its flow chain, and steers with (a) that feature alone, (b) every
chain feature at once with the same per-layer strength, (c) the chain with a strength decaying as
s·e^{α·l} and (d) the chain with s ÷ its length per layer (the same total as (a)). Prints the seed
feature's activation on the generated text and the text's perplexity under the unsteered model.

    python -m core.steering.compare_chain [--atlas PATH] [--source wiki_fr] [--feature N]
        [--alpha -0.7]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from core.flow.chains import Node, flow_graph
from core.paths import default_atlas_path
from core.steering.chain import chain_spec
from core.steering.generate import SamplingConfig
from core.steering.interventions import Intervention, from_chain
from core.steering.live import LiveModel
from core.store import flow_sql
from core.store.atlas import Atlas


def _row(live: LiveModel, prompt: str, items: list[Intervention], seed: Node, cfg: SamplingConfig,
         mode: str, strength: float) -> dict[str, object]:  # fmt: skip
    res = live.generate(prompt, items, cfg)
    fm = live.measure(res, [(seed.sae_id, seed.feature)])
    f = fm.features[0]
    return {"mode": mode, "strength": strength, "act_default": f.mean[0], "act_steered": f.mean[1],
            "ppl_default": fm.perplexity[0], "ppl_steered": fm.perplexity[1],
            "text": res.texts[1][:70].replace("\n", " ")}  # fmt: skip


def compare(
    atlas: Path,
    source: str,
    strengths: list[float],
    prompt: str,
    n_tokens: int,
    feature: int | None = None,
    alpha: float = -0.7,
) -> pd.DataFrame:
    at = Atlas(atlas)
    cur = at.cursor()
    first = str(flow_sql.first_residual_sae(cur))
    pick = flow_sql.source_features(cur, first, source, k=20)["feature"].tolist()
    graphs = [flow_graph(cur, Node(first, int(f))) for f in ([feature] if feature else pick)]
    g = max(
        graphs, key=lambda g: len(g.chain)
    )  # the most source-specific feature with the longest chain
    nodes = [(c.sae_id, c.feature) for c in g.chain]
    n = len(nodes)
    print(f"seed {g.seed.sae_id}:{g.seed.feature} chain {nodes}")
    live = LiveModel.from_atlas(at)
    cfg = SamplingConfig(max_new_tokens=n_tokens, temperature=0.0)
    rows: list[dict[str, object]] = []
    for s in strengths:
        modes: list[tuple[str, list[Intervention]]] = [
            ("single", [Intervention(g.seed.sae_id, g.seed.feature, strength=s)]),
            (f"chain x{n}", from_chain(chain_spec(nodes, s))),
            (f"chain decay {alpha:g}", from_chain(chain_spec(nodes, s, "decay", alpha))),
            (f"chain /{n}", from_chain(chain_spec(nodes, s / n))),
        ]
        rows += [_row(live, prompt, items, g.seed, cfg, mode, s) for mode, items in modes]
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--atlas", type=Path, default=default_atlas_path())
    p.add_argument("--source", default="wiki_fr")
    p.add_argument("--strengths", default="0.25,0.5,1,2")
    p.add_argument("--prompt", default="The weather today is")
    p.add_argument("--tokens", type=int, default=24)
    p.add_argument("--feature", type=int, help="seed feature of the first residual SAE")
    p.add_argument("--alpha", type=float, default=-0.7, help="decay per layer (e^-0.7 ≈ 1/2)")
    a = p.parse_args(argv)
    strengths = [float(x) for x in a.strengths.split(",")]
    df = compare(a.atlas, a.source, strengths, a.prompt, a.tokens, a.feature, a.alpha)
    with pd.option_context("display.width", 200, "display.max_colwidth", 70):
        print(df.to_string(index=False))


if __name__ == "__main__":
    main()
