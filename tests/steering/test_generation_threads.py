"""Generation runs on the model thread: its thread budget, its priority, the same text, and
page work that does not wait for it."""

from __future__ import annotations

import os
import sys
import threading
import time

import duckdb
import pytest
import torch

from core.model.loading import LoadedModel
from core.steering.engine import SaeBank, prepare
from core.steering.generate import SamplingConfig, generate_pair
from core.steering.interventions import Intervention
from core.steering.live import LiveModel

PROMPT = "Tell me about the history of Rome."
GREEDY = SamplingConfig(max_new_tokens=12, temperature=0.0, stop_at_eos=False)


def page_query(con: duckdb.DuckDBPyConnection) -> float:
    """A page-sized read (an aggregate over 2M rows, then pandas): seconds it took."""
    t0 = time.perf_counter()
    cur = con.cursor()
    cur.execute("SELECT i % 1000 AS g, avg(i) AS a FROM range(2000000) t(i) GROUP BY g").df()
    cur.close()
    return time.perf_counter() - t0


def test_model_thread_keeps_its_budget_when_the_process_default_changes(
    lm: LoadedModel, bank: SaeBank
) -> None:
    live = LiveModel(lm, bank, threads=1)
    torch.set_num_threads(2)  # what a page thread (or torch's default) would use
    assert live.worker.call(torch.get_num_threads) == 1
    assert live.worker.call(threading.get_native_id) == live.worker.native_id
    assert live.worker.native_id != threading.get_native_id()


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread priority is a Linux feature")
def test_model_thread_runs_at_a_lower_priority(lm: LoadedModel, bank: SaeBank) -> None:
    live = LiveModel(lm, bank, threads=1, nice=5)
    tid = live.worker.call(threading.get_native_id)
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert os.getpriority(os.PRIO_PROCESS, tid) == min(19, mine + 5)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine  # pages keep theirs


def test_greedy_text_is_the_same_on_the_model_thread(lm: LoadedModel, bank: SaeBank) -> None:
    """The budgeted thread computes what the caller would (1 thread both, fixture)."""
    items = [Intervention("L3/resid_post", 2, method="clamp", strength=6.0)]
    live = LiveModel(lm, bank, threads=1)
    here = generate_pair(
        lm.model, lm.tokenizer, PROMPT, prepare(items, bank, lm.device, lm.model.dtype), GREEDY
    )
    there = live.generate(PROMPT, items, GREEDY)
    assert there.ids == here.ids and there.texts == here.texts
    assert there.ids[0] != there.ids[1]  # the steered row really was steered


def test_a_page_query_completes_while_a_generation_runs(lm: LoadedModel, bank: SaeBank) -> None:
    con = duckdb.connect()
    alone = min(page_query(con) for _ in range(3))
    live = LiveModel(lm, bank, threads=1)
    cfg = SamplingConfig(max_new_tokens=256, temperature=0.0, stop_at_eos=False)
    started, done = threading.Event(), threading.Event()

    def generate() -> None:
        for step in live.stream(PROMPT, [], cfg):
            started.set()
            if step.result is not None:
                done.set()

    gen = threading.Thread(target=generate, daemon=True)
    gen.start()
    assert started.wait(120)
    loaded = sorted(page_query(con) for _ in range(5))
    running = not done.is_set()
    gen.join(timeout=600)
    assert running, "the generation ended before the page queries: nothing was measured"
    assert done.is_set() and not live.busy
    # On 2 cores the model thread takes about one: a page may slow down, never wait it out.
    assert loaded[2] <= 4 * alone + 0.5, (alone, loaded)
