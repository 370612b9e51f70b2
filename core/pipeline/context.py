"""What every build stage gets: the config, the atlas writer, the loaded model and SAEs, and the
pieces built lazily from the stored corpus (contexts, vocabulary) and the side files' paths.

Stages import this module only; the dispatcher (run.py) builds the context and calls them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.model.loading import LoadedModel, load_model
from core.model.sites import Site, site_module
from core.pipeline.config import BuildConfig, SaeSpec
from core.pipeline.timing import StageTimer
from core.pipeline.tokenize import Context, contexts, vocab_strings
from core.sae.formats import load_sae
from core.sae.model import SAE
from core.store.atlas import AtlasWriter, sae_dir_name
from core.store.pipeline_sql import token_ids


@dataclass
class BuildContext:
    cfg: BuildConfig
    writer: AtlasWriter
    folder: Path
    """The atlas's folder: side folders (acts-, saes-, work-<run_id>) live beside the atlas."""
    run_id: str
    acts_dir: Path
    timer: StageTimer
    lm: LoadedModel
    sites: list[Site]
    saes: dict[Site, SAE] = field(default_factory=dict)
    _ctxs: list[Context] | None = None
    _vocab: list[str] | None = None
    _pool: Any = None

    @classmethod
    def open(
        cls,
        cfg: BuildConfig,
        writer: AtlasWriter,
        folder: Path,
        run_id: str,
        acts_name: str,
        timer: StageTimer,
    ) -> BuildContext:
        with timer.stage("load model"):
            lm = load_model(cfg.model.spec, cfg.model.device, cfg.model.dtype)
        sites = [Site.parse(s.site) for s in cfg.saes]
        if not sites:
            raise ValueError("no SAE sites given: pass --sae SITE[=PATH] or use a profile")
        for s in sites:  # fail before any work on a site the model lacks
            site_module(lm.model, s)
        ctx = cls(cfg, writer, folder, run_id, folder / acts_name, timer, lm, sites)
        ctx.load_given_saes()
        return ctx

    # ---- shared lazily-built pieces --------------------------------------------------------
    @property
    def d_model(self) -> int:
        return int(self.lm.model.config.hidden_size)

    @property
    def vocab(self) -> list[str]:
        if self._vocab is None:
            self._vocab = vocab_strings(self.lm.tokenizer)
        return self._vocab

    @property
    def ctxs(self) -> list[Context]:
        """The model's input contexts, cut from the stored tokens (after the corpus stage)."""
        if self._ctxs is None:
            self._ctxs = contexts(token_ids(self.writer.con), self.cfg.corpus.ctx_len)
        return self._ctxs

    def forget_contexts(self) -> None:
        """The stored tokens changed: cut the contexts again on next use."""
        self._ctxs = None

    def n_tokens(self) -> int:
        return int(sum(len(c.ids) for c in self.ctxs))

    def spec(self, site: Site) -> SaeSpec:
        return next(s for s in self.cfg.saes if Site.parse(s.site) == site)

    def to_train(self) -> list[Site]:
        return [s for s in self.sites if self.spec(s).path is None]

    def dense_file(self, site: Site) -> Path:
        return self.folder / f"work-{self.run_id}" / f"{sae_dir_name(site.id)}.f16"

    def weights_dir(self, site: Site) -> Path:
        return self.folder / f"saes-{self.run_id}" / sae_dir_name(site.id)

    def dense(self, site: Site, create: bool = False) -> np.memmap:
        """The site's captured activations (n_tokens, d_model) float16, memory-mapped."""
        path = self.dense_file(site)
        path.parent.mkdir(parents=True, exist_ok=True)
        mode: Any = "w+" if create and not path.exists() else "r+"
        return np.memmap(path, dtype=np.float16, mode=mode, shape=(self.n_tokens(), self.d_model))

    def ray_pool(self) -> Any:
        """The Ray actors of this build (started on first use), or None without `--ray`."""
        if not self.cfg.ray.enabled:
            return None
        if self._pool is None:
            from core.pipeline.shards import ActorPool

            self._pool = ActorPool(self.cfg.ray, self.cfg.model)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def load_given_saes(self) -> None:
        """Load user-given SAEs, and trained ones already saved by an earlier (resumed) run."""
        for site in self.sites:
            spec = self.spec(site)
            if spec.path is not None:
                self.saes[site] = load_sae(
                    spec.path, spec.format, expected_d_in=self.d_model, site=site.id
                )
            elif (self.weights_dir(site) / "cfg.json").exists():
                self.saes[site] = load_sae(self.weights_dir(site), "saelens")
        for sae in self.saes.values():
            sae.to(self.lm.device)
