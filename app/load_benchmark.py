"""Page latency of the real app server with sessions generating, over Streamlit's websocket.

    python -m app.load_benchmark [--atlas data/atlases/default/atlas.duckdb]
        [--sessions 8] [--generators 2] [--requests 50]

Starts `sae-atlas app` on a free port, opens `--sessions` websocket sessions like a browser
tab does (`/_stcore/stream`, BackMsg rerun_script). `--generators` of them open the Steering
page and press Generate again and again; the others load the Overview, Features, Feature and
Map pages in turn, `--requests` each. A page load is timed from the rerun request to the
server's `script_finished`: every element of the page has been sent (no browser renders it).
A load is correct when it finished, raised nothing, and shows the page's title. Prints
p50/p95 of the page loads, and the generations finished meanwhile.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from core.steering.page_load import summary

PAGES = [  # (url path, query, text the page's title holds)
    ("overview", {}, "Overview"),
    ("features", {}, "Features"),
    ("feature", {"sae": "L13/resid_post", "feature": "7"}, "feature 7"),
    ("map", {}, "Feature map"),
]
RERUN = ForwardMsg.ScriptFinishedStatus.FINISHED_EARLY_FOR_RERUN


@dataclass
class Load:
    """What one script run sent back."""

    seconds: float = 0.0
    titles: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    buttons: dict[str, str] = field(default_factory=dict)  # label → widget id


class Session:
    """One browser tab's websocket: rerun a page, read messages until the run finishes."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    def run(self, page: str, query: dict[str, str], trigger: str | None = None) -> Load:
        msg = BackMsg()
        msg.rerun_script.query_string = urlencode(query)
        msg.rerun_script.page_name = page
        if trigger:
            msg.rerun_script.widget_states.widgets.append(
                WidgetState(id=trigger, trigger_value=True)
            )
        load, t0 = Load(), time.perf_counter()
        self.ws.send(msg.SerializeToString())
        while True:
            fwd = ForwardMsg()
            fwd.ParseFromString(self.ws.recv(timeout=900))
            if fwd.WhichOneof("type") == "delta":
                _read_delta(fwd, load)
            elif fwd.WhichOneof("type") == "script_finished" and fwd.script_finished != RERUN:
                load.seconds = time.perf_counter() - t0
                return load


def session(url: str) -> ClientConnection:
    """A websocket like a browser tab's (use it as a context manager)."""
    protocols = [Subprotocol("streamlit")]
    return connect(url.replace("http", "ws") + "/_stcore/stream", max_size=None,
                   subprotocols=protocols, open_timeout=60)  # fmt: skip


def _read_delta(fwd: ForwardMsg, load: Load) -> None:
    el = fwd.delta.new_element
    kind = el.WhichOneof("type")
    if kind == "heading":
        load.titles.append(el.heading.body)
    elif kind == "exception":
        load.errors.append(f"{el.exception.type}: {el.exception.message}")
    elif kind == "alert" and el.alert.format == el.alert.ERROR:
        load.errors.append(el.alert.body)
    elif kind == "button":
        load.buttons[el.button.label] = el.button.id


def reader(
    url: str, start: int, args: argparse.Namespace, times: dict[str, list[float]], bad: list[str]
) -> None:
    """--requests page loads, --think seconds apart (fewer once --max-seconds have passed)."""
    n, until = args.requests, time.monotonic() + args.max_seconds
    with session(url) as ws:
        s = Session(ws)
        for i in range(n):
            if time.monotonic() > until:
                return
            page, query, title = PAGES[(start + i) % len(PAGES)]
            time.sleep(args.think if i else 0)
            load = s.run(page, query)
            times.setdefault(page if i else "first", []).append(load.seconds)
            if load.errors or not any(title in t for t in load.titles):
                bad.append(f"{page}: titles {load.titles[:2]} errors {load.errors[:2]}")


def generator(url: str, stop: threading.Event, done: list[float], bad: list[str]) -> None:
    """The Steering page with its defaults; press Generate until told to stop."""
    with session(url) as ws:
        s = Session(ws)
        first = s.run("steering", {"sae": "L13/resid_post", "feature": "7"})
        button = first.buttons.get("Generate")
        if button is None or first.errors:
            bad.append(f"steering: no Generate button; errors {first.errors[:2]}")
            return
        while not stop.is_set():
            load = s.run("steering", {}, trigger=button)
            if load.errors:
                bad.append(f"steering: {load.errors[:2]}")
            else:
                done.append(load.seconds)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(atlas: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cli = Path(sys.executable).with_name("sae-atlas")
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(cli), "app", "--atlas", str(atlas), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise TimeoutError(f"the app did not start; see {log}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atlas", type=Path, default=Path("data/atlases/default/atlas.duckdb"))
    ap.add_argument("--url", default="", help="an app already running (else one is started)")
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--generators", type=int, default=2)
    ap.add_argument("--requests", type=int, default=50, help="page loads per reading session")
    ap.add_argument("--max-seconds", type=float, default=900, help="stop loading pages after")
    ap.add_argument("--think", type=float, default=0.0, help="seconds between a session's loads")
    ap.add_argument("--log", type=Path, default=Path("/tmp/load_benchmark_app.log"))
    args = ap.parse_args(argv)
    proc, url = (None, args.url) if args.url else start_server(args.atlas.resolve(), args.log)
    try:
        measure(url, args)
    finally:
        if proc is not None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def measure(url: str, args: argparse.Namespace) -> None:
    with session(url) as ws:  # caches and the model load once, outside the timings
        for page, query, _ in [*PAGES, ("steering", {}, "")]:
            Session(ws).run(page, query)
    stop = threading.Event()
    times: dict[str, list[float]] = {}
    gens: list[float] = []
    bad: list[str] = []
    gthreads = [threading.Thread(target=generator, args=(url, stop, gens, bad))
                for _ in range(args.generators)]  # fmt: skip
    for t in gthreads:
        t.start()
    time.sleep(5 if gthreads else 0)  # the generations are under way
    readers = [threading.Thread(target=reader, args=(url, i, args, times, bad))
               for i in range(args.sessions - args.generators)]  # fmt: skip
    for t in readers:
        t.start()
    for t in readers:
        t.join()
    stop.set()
    for t in gthreads:
        t.join()
    print(f"{url}: {args.sessions} sessions, {args.generators} generating, think {args.think}s")
    print(summary("pages that do not generate", [t for ts in times.values() for t in ts]))
    print(
        summary(
            "  all but each session's first",
            [t for p, ts in times.items() if p != "first" for t in ts],
        )
    )
    for page, ts in times.items():
        print(summary(f"  {page}", ts))
    print(f"generations finished meanwhile: {len(gens)}"
          + (f", median {statistics.median(gens):.1f}s each" if gens else ""))  # fmt: skip
    print(f"incorrect loads: {len(bad)}" + "".join(f"\n  {b}" for b in bad[:10]))


if __name__ == "__main__":
    main()
