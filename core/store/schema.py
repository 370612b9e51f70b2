"""The atlas schema: every table the build writes and the app reads (DDL only).

Keys: an SAE is `sae_id` ('L12/resid_post'); a feature is (sae_id, feature).
Sparse activations live in Parquet beside the DB (the `activations` view, runs.py).
"""

SCHEMA_VERSION = 1

TABLES: dict[str, str] = {
    "runs": """
        run_id VARCHAR PRIMARY KEY, created TIMESTAMP, config JSON, versions JSON,
        timings JSON, acts_dir VARCHAR, schema_version INTEGER""",
    # One row per finished stage: wall seconds and the process's peak resident memory (MB)
    # while it ran; detail: the stage's own summary (counts, ids).
    "stages": """
        stage VARCHAR PRIMARY KEY, finished TIMESTAMP, seconds DOUBLE, detail JSON,
        peak_rss_mb DOUBLE""",
    "model_info": """
        name VARCHAR, source VARCHAR, n_layers INTEGER, d_model INTEGER, vocab_size INTEGER,
        device VARCHAR""",
    "documents": """
        doc_id INTEGER PRIMARY KEY, source VARCHAR, topic VARCHAR, language VARCHAR,
        licence VARCHAR, title VARCHAR, n_tokens INTEGER""",
    # One row per corpus token that went through the model; token_str is the decoded piece.
    "tokens": """
        doc_id INTEGER, pos INTEGER, token_id INTEGER, token_str VARCHAR""",
    "saes": """
        sae_id VARCHAR PRIMARY KEY, layer INTEGER, site VARCHAR, architecture VARCHAR,
        d_in INTEGER, d_sae INTEGER, k INTEGER, source VARCHAR, weights_path VARCHAR,
        fvu DOUBLE, l0 DOUBLE, dead_frac DOUBLE, ce_base DOUBLE, ce_spliced DOUBLE,
        ce_zero_ablation DOUBLE, ce_increase DOUBLE, frac_loss_recovered DOUBLE,
        n_tokens_eval BIGINT, train_log JSON, cfg JSON""",
    # density = n_fire / all corpus tokens (nothing excluded: the default corpus has no BOS/padding).
    "features": """
        sae_id VARCHAR, feature INTEGER, n_fire BIGINT, density DOUBLE, max_act REAL,
        mean_act REAL, top_tokens VARCHAR[], PRIMARY KEY (sae_id, feature)""",
    # kind 'top' (rank by activation) or 'interval' (bin = equal-width interval of [0, max]).
    # token_ids: the window's token ids (their bytes join characters split across tokens).
    "examples": """
        sae_id VARCHAR, feature INTEGER, kind VARCHAR, rank INTEGER, bin INTEGER,
        doc_id INTEGER, pos INTEGER, act REAL, center INTEGER, tokens VARCHAR[], acts REAL[],
        token_ids INTEGER[]""",
    # 50 equal-width bins over (0, max_act]; edges has 51 entries.
    "histograms": """
        sae_id VARCHAR, feature INTEGER, edges REAL[], counts BIGINT[],
        PRIMARY KEY (sae_id, feature)""",
    # sign +1 / -1: decoder direction · W_U, top 10 each way.
    "logits": """
        sae_id VARCHAR, feature INTEGER, sign TINYINT, rank INTEGER, token_id INTEGER,
        token_str VARCHAR, value REAL""",
    "neighbours": """
        sae_id VARCHAR, feature INTEGER, rank INTEGER, neighbour INTEGER, cosine REAL""",
}


# ---- explanations ------------------------------------------------------------------------------
# Several explanations per feature, one per (explainer, model, prompt_version); a failed call or
# an unparsable answer has explanation NULL and the reason in `error` (re-running retries it).
# embedding: all-MiniLM-L6-v2 of the explanation (unit norm) for semantic search. Scores:
# embedding_auroc (held-out activating vs random non-activating windows), embedding_auroc_hard
# (vs windows of neighbouring features), detection / fuzzing (balanced accuracy, LLM scorer),
# simulation (correlation, optional); NULL where not computed. detail: sample sizes, lifts, usage.
# run_id: the build run whose activations it explains (rows of an earlier run are dropped).
EXPLAIN_TABLES: dict[str, str] = {
    "explanations": """
        sae_id VARCHAR, feature INTEGER, explainer VARCHAR, model VARCHAR, prompt_version VARCHAR,
        created TIMESTAMP, run_id VARCHAR, explanation VARCHAR, error VARCHAR, embedding FLOAT[384],
        embedding_auroc REAL, embedding_auroc_hard REAL, detection REAL, fuzzing REAL,
        simulation REAL, scorer_model VARCHAR, detail JSON,
        PRIMARY KEY (sae_id, feature, explainer, model, prompt_version)""",
}

# ---- geometry: UMAP, co-occurrence, lobes, layer structure ---------------------------------------
# Lobes are spectral clusters of window co-occurrence (-1: never occurs in a window); geo_cluster
# the spectral clusters of decoder directions (angular similarity), same k. joint_x/y: one UMAP
# of all residual SAEs together (NULL for other sites). lobe / geo_cluster here: default k.
GEOMETRY_TABLES: dict[str, str] = {
    "feature_geometry": """
        sae_id VARCHAR, feature INTEGER, umap_x REAL, umap_y REAL, joint_x REAL, joint_y REAL,
        lobe INTEGER, geo_cluster INTEGER, n_windows BIGINT, PRIMARY KEY (sae_id, feature)""",
    "feature_lobes": """
        sae_id VARCHAR, k INTEGER, feature INTEGER, lobe INTEGER, geo_cluster INTEGER,
        PRIMARY KEY (sae_id, k, feature)""",
    # Top partners by phi among features sharing a window (n11 > 0), within one SAE.
    "cooccurrence": """
        sae_id VARCHAR, feature INTEGER, rank INTEGER, other INTEGER, phi REAL, jaccard REAL,
        n11 BIGINT""",
    # top_features: hubs (highest mean phi inside the lobe); n_windows_won: windows it wins.
    "lobes": """
        sae_id VARCHAR, k INTEGER, lobe INTEGER, size INTEGER, top_tokens VARCHAR[],
        top_features INTEGER[], n_windows_won BIGINT, PRIMARY KEY (sae_id, k, lobe)""",
    # Winning lobe (argmax of the fraction of its features active) per window, counted by the
    # window's document facet ('source' | 'topic' | 'language').
    "lobe_function": """
        sae_id VARCHAR, k INTEGER, facet VARCHAR, value VARCHAR, lobe INTEGER, n_windows BIGINT""",
    # metric: ami_geometry_vs_lobes | logreg_balanced_accuracy (per k) |
    # eigen_power_law_slope | clustering_entropy (k NULL). z = (value - mean) / std.
    "geometry_metrics": """
        sae_id VARCHAR, k INTEGER, metric VARCHAR, value DOUBLE, baseline_mean DOUBLE,
        baseline_std DOUBLE, z DOUBLE, detail JSON""",
    # Covariance eigenvalues of the unit decoder rows, and of Gaussian rows of the same shape
    # scaled to the same total variance.
    "eigen_spectrum": """
        sae_id VARCHAR, rank INTEGER, eigenvalue DOUBLE, gaussian DOUBLE,
        PRIMARY KEY (sae_id, rank)""",
}

# ---- cross-layer flow ----------------------------------------------------------------------------
FLOW_TABLES: dict[str, str] = {
    # Decoder-cosine matches between SAEs in the same space (METHODS §6). kind: 'R' resid L-1 ->
    # resid L, 'M' / 'A' mlp_out / attn_out L -> resid L. direction 'back': for each dst feature
    # its top-k src candidates (rank 1 = its predecessor); 'fwd': for each src feature its
    # top-k dst candidates (rank 1 = its successor).
    "flow_edges": """
        src_sae VARCHAR, src_feature INTEGER, dst_sae VARCHAR, dst_feature INTEGER, kind VARCHAR,
        direction VARCHAR, rank INTEGER, cosine REAL""",
    # One row per residual feature. s_* = top-1 cosine to the resid SAE of layer L-1 (r) and the
    # mlp_out / attn_out SAEs of layer L (m, a); pred_* = that feature's index; NULL where the
    # atlas has no such SAE. flow_class: translated | processed | newborn | unexplained, or
    # persists | emerges with residual SAEs only; NULL without a layer L-1 residual SAE.
    "flow_classes": """
        sae_id VARCHAR, feature INTEGER, layer INTEGER, s_r REAL, s_m REAL, s_a REAL,
        pred_r INTEGER, pred_m INTEGER, pred_a INTEGER, flow_class VARCHAR,
        PRIMARY KEY (sae_id, feature)""",
    # Distribution of s_r / s_m / s_a per residual SAE (series 'observed') and of the same score
    # against random unit directions (series 'random', the chance level), with the threshold used.
    "flow_score_hist": """
        sae_id VARCHAR, kind VARCHAR, series VARCHAR, bin INTEGER, lo REAL, hi REAL,
        count BIGINT, threshold REAL""",
    # Same-token co-firing of matched (top-1, cosine >= min_cosine) vs random feature pairs.
    # jaccard = tokens both fire / tokens either fires; overlap = both / min(n_src, n_dst);
    # share_cofire = share of pairs with overlap >= cofire_overlap.
    "flow_validation": """
        src_sae VARCHAR, dst_sae VARCHAR, kind VARCHAR, series VARCHAR, n_pairs INTEGER,
        min_cosine REAL, cofire_overlap REAL, mean_jaccard DOUBLE, median_jaccard DOUBLE,
        mean_overlap DOUBLE, share_cofire DOUBLE""",
}


def all_tables() -> dict[str, str]:
    return {**TABLES, **EXPLAIN_TABLES, **GEOMETRY_TABLES, **FLOW_TABLES}


# Columns added after the first release: an atlas built before them gains them when a build
# resumes or overwrites stages in it (readers never need them).
ADDED_COLUMNS: dict[str, list[str]] = {
    "stages": ["peak_rss_mb DOUBLE"],
    "examples": ["token_ids INTEGER[]"],  # filled at commit where missing (search_index)
}


def create_statements() -> list[str]:
    tables = [f"CREATE TABLE IF NOT EXISTS {name} ({cols})" for name, cols in all_tables().items()]
    added = [
        f"ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {col}"
        for name, cols in ADDED_COLUMNS.items()
        for col in cols
    ]
    return tables + added
