"""``langdml bench eval|data|train|guidance``: one module per benchmark, one shared timing helper (timing.py).

The benchmarks import the library, never the runner; nothing in the library imports them.
"""

from __future__ import annotations

import argparse

from langdml_core.bench.data import add_data_parser
from langdml_core.bench.eval import add_eval_parser
from langdml_core.bench.guidance import add_guidance_parser
from langdml_core.bench.train import add_train_parser


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``bench`` and its sub-commands on the CLI's sub-parsers; ``args.func(args)`` runs one."""
    bench = subparsers.add_parser(
        "bench", help="benchmarks: eval, guidance, data, train (langdml bench data --help)"
    )
    which = bench.add_subparsers(dest="bench_command", required=True)
    add_eval_parser(which)
    add_guidance_parser(which)
    add_data_parser(which)
    add_train_parser(which)
    return bench
