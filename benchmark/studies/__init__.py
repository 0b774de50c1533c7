"""Studies behind documented choices (not part of the benchmark runs).

- :mod:`benchmark.studies.layer_choice`: the ROME layer sweep behind the embedded models'
  edited layers (docs/layer-choice.md), ``python -m benchmark.studies.layer_choice``.
- :mod:`benchmark.studies.calibration`: the batch editors' λ, AlphaEdit's null-space
  threshold and NSE's band on a small model (docs/batch-editors.md),
  ``python -m benchmark.studies.calibration``.
"""
