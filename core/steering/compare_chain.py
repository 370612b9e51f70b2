"""Single-layer vs whole-chain steering of one concept (METHODS §6), measured on the atlas.

Picks the residual feature most specific to a corpus source (default: French Wikipedia) at the
chain's first layer, follows its flow chain, and steers with (a) that feature alone and (b) every
chain feature at once with the same per-layer strength. Prints the seed feature's activation on
the generated text and the text's perplexity under the unsteered model, per strength.

    python -m core.steering.compare_chain [--atlas PATH] [--source wiki_fr] [--feature N]
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
) -> pd.DataFrame:
    at = Atlas(atlas)
    cur = at.cursor()
    first = str(flow_sql.first_residual_sae(cur))
    pick = flow_sql.source_features(cur, first, source, k=20)["feature"].tolist()
    graphs = [flow_graph(cur, Node(first, int(f))) for f in ([feature] if feature else pick)]
    g = max(
        graphs, key=lambda g: len(g.chain)
    )  # the most source-specific feature with the longest chain
    print(f"seed {g.seed.sae_id}:{g.seed.feature} chain {[(n.sae_id, n.feature) for n in g.chain]}")
    live = LiveModel.from_atlas(at)
    cfg = SamplingConfig(max_new_tokens=n_tokens, temperature=0.0)
    rows = []
    for s in strengths:
        single = [Intervention(g.seed.sae_id, g.seed.feature, strength=s)]
        chain = from_chain(chain_spec([(n.sae_id, n.feature) for n in g.chain], s))
        rows.append(_row(live, prompt, single, g.seed, cfg, "single", s))
        rows.append(_row(live, prompt, chain, g.seed, cfg, f"chain x{len(chain)}", s))
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
    a = p.parse_args(argv)
    strengths = [float(x) for x in a.strengths.split(",")]
    df = compare(a.atlas, a.source, strengths, a.prompt, a.tokens, a.feature)
    with pd.option_context("display.width", 200, "display.max_colwidth", 70):
        print(df.to_string(index=False))


if __name__ == "__main__":
    main()
