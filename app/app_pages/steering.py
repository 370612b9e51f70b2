"""Steering: the default and the steered continuation of one prompt, side by side, live.

URLs: `?sae=…&feature=…` (steer with this feature), `?chain=…&schedule=…&alpha=…&strength=…`
(a feature-flow chain), and the shareable settings written after each run:
`?steer=sae:feature:method:strength,…&prompt=…&pos=…&special=…&chat=…&t=…&top_p=…&fp=…&seed=…&n=…`.
"""

from __future__ import annotations

import itertools
import math
from contextlib import closing
from typing import Any
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from app import data, state, widgets
from app.live import busy_note, d_sae, describe, label, live_model
from app.text import code, plain
from core.params import ParamError, parse_int, parse_number
from core.steering.chain import ALPHA_RANGE, chain_spec, parse_chain
from core.steering.generate import MAX_NEW_TOKENS, MAX_SEED, PairResult, SamplingConfig
from core.steering.interventions import (
    METHODS,
    Intervention,
    SteeringError,
    format_items,
    from_chain,
    parse_items,
)
from core.steering.live import LiveModel
from core.steering.measure import SteerMeasures
from core.steering.saved import SavedSteer, save_steer
from core.store.queries import FeatureFilter
from core.workspace import WorkspaceError

ITEMS, LAST, URL_SEEN, URL_ERRORS = "steer-items", "steer-last", "steer-url", "steer-url-errors"
UIDS = itertools.count()
DEFAULTS: dict[str, Any] = {
    "steer-prompt": "Tell me about your weekend.", "steer-t": 0.5, "steer-top-p": 1.0,
    "steer-fp": 1.0, "steer-seed": 16, "steer-n": 48, "steer-chat": True, "steer-pos": "all",
    "steer-special": True,
}  # fmt: skip
PRESETS: dict[str, dict[str, Any]] = {
    "Neuronpedia (T 0.5, freq. penalty 1, seed 16)": {
        "steer-t": 0.5, "steer-top-p": 1.0, "steer-fp": 1.0, "steer-seed": 16,
    },
    "Greedy (T 0, no penalty)": {"steer-t": 0.0, "steer-fp": 0.0},
    "Creative (T 1, top-p 0.95)": {"steer-t": 1.0, "steer-top-p": 0.95, "steer-fp": 0.5},
}  # fmt: skip
RANGES = {"additive": (-10.0, 10.0), "clamp": (-2.0, 10.0), "rescale": (-5.0, 5.0)}
START = {"additive": 2.0, "clamp": 1.0, "rescale": 0.0}
UNITS = {"additive": "× max act", "clamp": "target, × max act", "rescale": "× r"}
URL_KEYS = {"t": ("steer-t", 0.0, 2.0), "top_p": ("steer-top-p", 0.05, 1.0),
            "fp": ("steer-fp", -2.0, 2.0), "seed": ("steer-seed", 0, MAX_SEED),
            "n": ("steer-n", 1, MAX_NEW_TOKENS)}  # fmt: skip
"""URL name → (state key, lo, hi) of the sampling widgets; `n` stops lower on a CPU."""
MAX_URL_PROMPT = 4000


# ---- the list of features being steered -------------------------------------------------------
def add_item(
    sae_id: str, feature: int, method: str = "additive", strength: float | None = None
) -> None:
    items: list[dict[str, Any]] = st.session_state.setdefault(ITEMS, [])
    if any(i["sae_id"] == sae_id and i["feature"] == feature for i in items):
        return
    lo, hi = RANGES[method]
    value = START[method] if strength is None else min(hi, max(lo, strength))
    items.append({"uid": next(UIDS), "sae_id": sae_id, "feature": int(feature),
                  "method": method, "strength": float(value)})  # fmt: skip


def remove_item(uid: int) -> None:
    st.session_state[ITEMS] = [i for i in st.session_state.get(ITEMS, []) if i["uid"] != uid]


def reset_strength(uid: int) -> None:
    st.session_state[f"steer-s-{uid}"] = START[st.session_state[f"steer-m-{uid}"]]


def interventions() -> list[Intervention]:
    """The features as steered now (method and strength per feature; shared positions)."""
    ss = st.session_state
    common = {"positions": ss["steer-pos"], "skip_special": ss["steer-special"]}
    return [
        Intervention(i["sae_id"], i["feature"], i["method"], i["strength"], **common)
        for i in ss.get(ITEMS, [])
    ]


# ---- URL → state ------------------------------------------------------------------------------
def apply_url(sizes: dict[str, int], cap: int) -> None:
    """Apply the query parameters once per distinct URL (a new feature link adds to the list).
    A bad value is not applied: an error names the parameter and its range while the URL stays
    as given (it changes only when the user generates)."""
    params = st.query_params.to_dict()
    sig = urlencode(sorted(params.items()))
    if st.session_state.get(URL_SEEN) != sig:
        st.session_state[URL_SEEN] = sig
        st.session_state[URL_ERRORS] = _settings_from_url(params, cap) + _add_items(params, sizes)
    for level, message in st.session_state.get(URL_ERRORS, []):
        (st.error if level == "error" else st.warning)(message)


def _add_items(params: dict[str, str], sizes: dict[str, int]) -> list[tuple[str, str]]:
    """Steered features from the link; (level, markdown-safe message) of what was refused."""
    try:
        found = _items_from_url(params)
    except ParamError as err:  # a number out of its range
        return [("error", f"The link's features were not applied: {plain(err)}.")]
    except (SteeringError, ValueError) as err:  # malformed
        return [("warning", f"Some of the link's settings were ignored: {plain(err)}")]
    if "steer" in params:
        st.session_state[ITEMS] = []
    errors = []
    for it in found:
        if it.sae_id not in sizes or it.feature >= sizes[it.sae_id]:
            errors.append(("warning", f"{code(it.sae_id)} #{it.feature} is not in this atlas."))
            continue
        add_item(it.sae_id, it.feature, it.method, it.strength)
    return errors


def _items_from_url(p: dict[str, str]) -> list[Intervention]:
    items: list[Intervention] = []
    if "steer" in p:
        items = parse_items(p["steer"])
    elif "chain" in p:
        strength = parse_number("strength", p.get("strength", "1"), *RANGES["additive"])
        alpha = parse_number("alpha", p.get("alpha", "0"), *ALPHA_RANGE)
        spec = chain_spec(parse_chain(p["chain"]), strength, p.get("schedule", "constant"), alpha)  # type: ignore[arg-type]
        items = from_chain(spec)
    elif "sae" in p and "feature" in p:
        feature = parse_int("feature", p["feature"], 0, 2**31 - 1)
        items = [Intervention(p["sae"], feature, strength=START["additive"])]
    for it in items:  # a strength the slider cannot show is refused, never clamped
        parse_number(f"the strength of {it.label} ({it.method})", it.strength, *RANGES[it.method])
    return items


def _settings_from_url(p: dict[str, str], cap: int) -> list[tuple[str, str]]:
    """Apply the link's sampling settings; ("error", message) for each value refused."""
    ss, errors = st.session_state, []
    if len(p.get("prompt", "")) <= MAX_URL_PROMPT:
        ss["steer-prompt"] = p.get("prompt", ss["steer-prompt"])
    else:
        errors.append(("error", f"The link's prompt has {len(p['prompt'])} characters; at most "
                      f"{MAX_URL_PROMPT} are taken from a link. It was not applied."))  # fmt: skip
    for name, (key, lo, hi) in URL_KEYS.items():
        if name not in p:
            continue
        whole = isinstance(DEFAULTS[key], int)
        try:
            value = parse_number(name, p[name], lo, cap if name == "n" else hi, whole)
        except ParamError as err:
            errors.append(("error", f"The link's setting was not applied: {plain(err)}."))
            continue
        ss[key] = type(DEFAULTS[key])(value)
    if p.get("pos") in ("all", "generated"):
        ss["steer-pos"] = p["pos"]
    for name, key in (("special", "steer-special"), ("chat", "steer-chat")):
        if name in p:
            ss[key] = p[name] != "0"
    return errors


def share_params(items: list[Intervention]) -> dict[str, str]:
    ss = st.session_state
    params = {"steer": format_items(items), "prompt": ss["steer-prompt"], "pos": ss["steer-pos"],
              "special": str(int(ss["steer-special"])), "chat": str(int(ss["steer-chat"]))}  # fmt: skip
    params |= {name: f"{ss[key]:g}" for name, (key, *_) in URL_KEYS.items()}
    return params


# ---- widgets ----------------------------------------------------------------------------------
def picker(key: str, sizes: dict[str, int]) -> None:
    """Add features: search the atlas, take them from a set, or give a number."""
    search, from_set, by_number = st.tabs(["Search", "From a set", "By number"])
    with search:
        text = st.text_input("Search explanations or top tokens", key="steer-q")
        if text.strip():
            rows = data.search_features(
                key, FeatureFilter(text=text.strip()), "max_act", True, 30, 0
            )
            if rows.empty:
                st.caption("No feature matches.")
            else:
                keys = [
                    (str(s), int(f)) for s, f in zip(rows["sae_id"], rows["feature"], strict=True)
                ]
                labels = {k: label(r) for k, (_, r) in zip(keys, rows.iterrows(), strict=True)}
                st.selectbox("Feature", keys, key="steer-q-pick", format_func=labels.__getitem__)
                st.button("Add", key="steer-q-add", on_click=add_from, args=("steer-q-pick",))
    with from_set:
        set_picker()
    with by_number:
        c = st.columns([3, 2, 1], vertical_alignment="bottom")
        sae = c[0].selectbox("SAE", list(sizes), key="steer-n-sae")
        c[1].number_input("Feature", 0, max(0, sizes.get(sae, 1) - 1), 0, key="steer-n-f")
        c[2].button("Add", key="steer-n-add", on_click=add_by_number)


def add_from(widget: str) -> None:
    """Callbacks read the widgets' committed values (args bound at render time may be stale)."""
    picked = st.session_state.get(widget)
    if picked:
        add_item(picked[0], int(picked[1]))


def add_by_number() -> None:
    add_item(st.session_state["steer-n-sae"], int(st.session_state["steer-n-f"]))


def set_picker() -> None:
    ws = state.workspace()
    sets = ws.list_sets()
    if not sets:
        st.caption("No feature sets yet (Sets & export page).")
        return
    chosen = st.selectbox(
        "Set", sets, key="steer-set", format_func=lambda s: f"{s.name} ({s.size})"
    )
    members = ws.members(chosen.set_id) if chosen else []
    picked = st.multiselect("Features", members, default=members[:3], key="steer-set-m",
                            format_func=lambda k: f"{k[0]} #{k[1]}")  # fmt: skip
    if st.button("Add", key="steer-set-add", disabled=not picked):
        for sae_id, f in picked:
            add_item(sae_id, f)
        st.rerun()


def items_editor(key: str, live: LiveModel) -> None:
    items = st.session_state.get(ITEMS, [])
    if not items:
        st.info("Add a feature to steer (search, a set, or a number) — or open this page from a "
                "feature page's “Steer with this”.")  # fmt: skip
        return
    info = describe(key, [(i["sae_id"], i["feature"]) for i in items])
    for item, (_, row) in zip(items, info.iterrows(), strict=True):
        _item_row(item, row)


def _item_row(item: dict[str, Any], row: pd.Series) -> None:
    """One steered feature: link, method, strength (its raw value below), remove."""
    uid, ss = item["uid"], st.session_state
    ss.setdefault(f"steer-m-{uid}", item["method"])  # widget state seeded from the item
    ss.setdefault(f"steer-s-{uid}", item["strength"])
    c = st.columns([4, 2, 4, 1], vertical_alignment="center")
    c[0].page_link(widgets.FEATURE_PAGE, label=label(row)[:90],
                   query_params=widgets.feature_params(item["sae_id"], item["feature"]))  # fmt: skip
    item["method"] = c[1].selectbox("Method", METHODS, key=f"steer-m-{uid}", args=(uid,),
                                    on_change=reset_strength, label_visibility="collapsed")  # fmt: skip
    lo, hi = RANGES[item["method"]]
    item["strength"] = c[2].slider(f"Strength ({UNITS[item['method']]})", lo, hi, step=0.05,
                                   key=f"steer-s-{uid}")  # fmt: skip
    max_act = float(row.get("max_act") or math.nan)
    if item["method"] != "rescale":
        c[2].caption(f"raw {item['strength'] * max_act:+.3g} (max act {max_act:.3g})")
    c[3].button("✕", key=f"steer-x-{uid}", on_click=remove_item, args=(uid,), help="remove")


def apply_preset() -> None:
    chosen = st.session_state.get("steer-preset")
    if chosen in PRESETS:
        st.session_state.update(PRESETS[chosen])


def options(live: LiveModel) -> None:
    c = st.columns(4)
    c[0].radio("Steer positions", ["all", "generated"], key="steer-pos", horizontal=True,
               help="generated: only tokens the model writes, not the prompt")  # fmt: skip
    c[1].checkbox("Leave chat special tokens unsteered", key="steer-special")
    c[2].checkbox("Chat template", key="steer-chat", help="wrap the prompt as a user turn")
    c[3].selectbox("Preset", list(PRESETS), key="steer-preset", index=None,
                   placeholder="Sampling preset…", on_change=apply_preset)  # fmt: skip
    d = st.columns(5)
    d[0].number_input("Temperature", *URL_KEYS["t"][1:], step=0.1, key="steer-t")
    d[1].number_input("Top-p", *URL_KEYS["top_p"][1:], step=0.05, key="steer-top-p")
    d[2].number_input("Frequency penalty", *URL_KEYS["fp"][1:], step=0.1, key="steer-fp")
    d[3].number_input("Seed", *URL_KEYS["seed"][1:], step=1, key="steer-seed")
    cap = token_cap(live)
    d[4].number_input("Max new tokens", 1, cap, step=8, key="steer-n",
                      help=f"at most {cap} on this {live.lm.device.type}")  # fmt: skip


def token_cap(live: LiveModel) -> int:
    """Most new tokens per run: fewer on a CPU."""
    return MAX_NEW_TOKENS if live.lm.device.type != "cpu" else 256


def sampling() -> SamplingConfig:
    ss = st.session_state
    return SamplingConfig(max_new_tokens=int(ss["steer-n"]), temperature=float(ss["steer-t"]),
                          top_p=float(ss["steer-top-p"]), freq_penalty=float(ss["steer-fp"]),
                          seed=int(ss["steer-seed"]), chat=bool(ss["steer-chat"]))  # fmt: skip


# ---- generation and results -------------------------------------------------------------------
def generate(live: LiveModel, items: list[Intervention], cfg: SamplingConfig) -> None:
    """Stream both continuations into two columns, then measure; keep the result in state."""
    prompt = st.session_state["steer-prompt"]
    status = st.empty()
    cols = st.columns(2)
    cols[0].markdown("**Default**")
    cols[1].markdown("**Steered**")
    boxes = [c.container(border=True).empty() for c in cols]
    res: PairResult | None = None
    with closing(live.stream(prompt, items, cfg)) as steps:
        for step in steps:
            if step.waiting:
                status.info(f"Waiting for the model: {step.waiting} session(s) ahead of you…",
                            icon=":material/hourglass_top:")  # fmt: skip
                continue
            status.caption(f"Generating… token {step.index + 1}/{cfg.max_new_tokens}")
            for box, text in zip(boxes, step.texts, strict=True):
                box.text(text)
            res = step.result or res
    status.empty()
    if res is None:
        return
    with st.spinner("Measuring…"):
        measures = live.measure(res, [(i.sae_id, i.feature) for i in items])
    params = share_params(items)
    st.session_state[LAST] = {"result": res, "measures": measures, "items": items,
                              "cfg": cfg, "prompt": prompt, "params": params}  # fmt: skip
    st.query_params.from_dict(params)
    st.session_state[URL_SEEN] = urlencode(sorted(params.items()))
    st.rerun()


def results() -> None:
    last = st.session_state.get(LAST)
    if not last:
        return
    res: PairResult = last["result"]
    cols = st.columns(2)
    for c, title, text in zip(cols, ("Default", "Steered"), res.texts, strict=True):
        c.markdown(f"**{title}**")
        c.container(border=True).text(text)
    st.caption(f"{res.steps} tokens in {res.seconds:.1f}s ({res.tokens_per_s:.1f} tokens/s per "
               "column, both computed in one batch)")  # fmt: skip
    show_measures(last["measures"])
    st.markdown("Shareable link to these settings:")
    st.code("steering?" + urlencode(last["params"]), language=None)
    save_form(last)


def show_measures(m: SteerMeasures) -> None:
    st.markdown("#### Measurements (under the unsteered model)")
    c = st.columns(3)
    c[0].metric("KL at prompt end", f"{m.kl_prompt_end:.3f} nats",
                help="KL(default ‖ steered) of the next-token distributions")  # fmt: skip
    c[1].metric("Perplexity, default", f"{m.perplexity[0]:.2f}")
    c[2].metric("Perplexity, steered", f"{m.perplexity[1]:.2f}",
                delta=f"{m.perplexity[1] - m.perplexity[0]:+.2f}", delta_color="inverse")  # fmt: skip
    st.caption("Target features' activations on the generated tokens of each text:")
    st.dataframe(m.frame(), hide_index=True, width="stretch")


def save_form(last: dict[str, Any]) -> None:
    with st.form("steer-save", border=False, clear_on_submit=True):
        c = st.columns([4, 1], vertical_alignment="bottom")
        name = c[0].text_input("Save this steer to the workspace", placeholder="a name")
        if not c[1].form_submit_button("Save", icon=":material/save:"):
            return
    steer = SavedSteer(name, last["prompt"], last["cfg"], last["items"], last["result"].texts,
                       last["measures"].to_dict(), "steering?" + urlencode(last["params"]))  # fmt: skip
    try:
        sid = save_steer(state.workspace(), steer)
    except WorkspaceError as err:
        st.error(plain(err))
    else:
        st.success(f"Saved as steer #{sid} in {code(state.workspace().path.name)}.")


def main() -> None:
    key = state.require_atlas()
    sizes = d_sae(key)
    for k, v in DEFAULTS.items():
        st.session_state.setdefault(k, v)
    st.title("Steering")
    live = live_model(key)
    apply_url(sizes, token_cap(live))
    st.text_area("Prompt", key="steer-prompt", height=90)
    picker(key, sizes)
    items_editor(key, live)
    options(live)
    busy_note(live)
    if st.button("Generate", type="primary", icon=":material/play_arrow:"):
        try:
            generate(live, interventions(), sampling())
        except SteeringError as err:
            st.error(plain(err))
    results()


main()
