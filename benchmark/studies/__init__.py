"""Studies behind documented choices (not part of the benchmark runs).

- :mod:`benchmark.studies.layer_choice`: the ROME layer sweep behind the embedded models'
  edited layers (docs/layer-choice.md), ``python -m benchmark.studies.layer_choice``.
- :mod:`benchmark.studies.calibration`: the batch editors' λ, AlphaEdit's null-space
  threshold and NSE's band on a small model (docs/batch-editors.md),
  ``python -m benchmark.studies.calibration``; its selection rules:
  :mod:`benchmark.studies.calibration_rules`.
"""

from __future__ import annotations

import argparse


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The options every study takes: where to write, the data and cache roots, threads."""
    from benchmark.commands.options import positive_int

    p.add_argument("--out", default=None)
    p.add_argument("--data-root", default=None)
    p.add_argument("--cache-root", default=None)
    p.add_argument("--threads", type=positive_int, default=None)


def start_run(args: argparse.Namespace) -> None:
    """Logging, offline mode and the thread count of a study run."""
    import logging

    import torch

    from benchmark.core import settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings.apply_offline_env()
    if args.threads:
        torch.set_num_threads(args.threads)
