"""Training of editor networks (MEND): data, the training step, checkpoints, the loop.

``train_mend(lm, hp, *, data_root=None, cache_root=None, progress=True)`` returns the
stored network's ``network.json`` (training it first when the cache lacks it).
"""

from benchmark.training.loop import train_mend

__all__ = ["train_mend"]
