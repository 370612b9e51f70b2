"""The atlas schema: every table the build writes and the app reads (DDL only; queries in queries.py).

Keys: an SAE is `sae_id` ('L12/resid_post'); a feature is (sae_id, feature).
Sparse activations live in Parquet beside the DB (see `activations` view in atlas.py).
"""

SCHEMA_VERSION = 1

TABLES: dict[str, str] = {
    "runs": """
        run_id VARCHAR PRIMARY KEY, created TIMESTAMP, config JSON, versions JSON,
        timings JSON, acts_dir VARCHAR, schema_version INTEGER""",
    "stages": """
        stage VARCHAR PRIMARY KEY, finished TIMESTAMP, seconds DOUBLE, detail JSON""",
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
    "examples": """
        sae_id VARCHAR, feature INTEGER, kind VARCHAR, rank INTEGER, bin INTEGER,
        doc_id INTEGER, pos INTEGER, act REAL, center INTEGER, tokens VARCHAR[], acts REAL[]""",
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


def create_statements() -> list[str]:
    return [f"CREATE TABLE IF NOT EXISTS {name} ({cols})" for name, cols in TABLES.items()]
