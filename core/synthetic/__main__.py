"""python -m core.synthetic --out PATH [--saes 16] [--width 65536] … : write a synthetic atlas.

Every SyntheticConfig field is an option (its docstring is the help text).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from core.config_help import add_field_option
from core.synthetic.atlas import generate
from core.synthetic.config import SyntheticConfig


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m core.synthetic",
        description="Generate a synthetic atlas in the real schema (benchmarks, browser tests).",
    )
    p.add_argument("--out", required=True, type=Path, help="atlas file to write (atlas.duckdb)")
    p.add_argument("--overwrite", action="store_true", help="replace an atlas already at --out")
    group = p.add_argument_group("synthetic config")
    for f in fields(SyntheticConfig):
        add_field_option(group, SyntheticConfig, f.name)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = SyntheticConfig(**{f.name: getattr(args, f.name) for f in fields(SyntheticConfig)})
        generate(args.out, cfg, overwrite=args.overwrite)
    except (ValueError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
