"""Paired statistics over per-item outputs: comparisons of two model states on the same
items (:mod:`~benchmark.stats.paired`), the comparison table of a result folder
(:mod:`~benchmark.stats.comparisons`), collapse points (:mod:`~benchmark.stats.collapse`),
all of one folder computed once (:mod:`~benchmark.stats.analysis`),
how tables show numbers (:mod:`~benchmark.stats.display`) and the README headline
(:mod:`~benchmark.stats.headline`).

Imports only ``benchmark.core``, ``benchmark.evaluation`` (items and statistics) and
``benchmark.results`` of the project.
"""
