"""One cell = one sequential editing trajectory, with checkpoints, evaluation variants and resume.

- :mod:`~benchmark.cell.folder`: the cell folder's one owner (paths, lock, markers, records,
  failures, status);
- :mod:`~benchmark.cell.context`: :class:`RunContext`, how a cell runs;
- :mod:`~benchmark.cell.rng`: seeding, RNG states, derived seeds, isolated evaluation RNG;
- :mod:`~benchmark.cell.state`: the typed run state and its save/restore;
- :mod:`~benchmark.cell.snapshot`: saved state on disk (safetensors + JSON + sha256 manifest);
- :mod:`~benchmark.cell.edits`: one edit step (Delta, restraint, accumulated update);
- :mod:`~benchmark.cell.loop`: the edit loop, :func:`~benchmark.cell.loop.run_cell`;
- :mod:`~benchmark.cell.evaluate`: records of the model as it is now;
- :mod:`~benchmark.cell.variants`: every evaluation variant at a checkpoint;
- :mod:`~benchmark.cell.provenance`: ``provenance.json`` of a completed cell.
"""
