"""Editing methods behind one contract (see editors.base).

``EDITORS`` is a lazy registry of method name -> editor class ("module:Class" strings,
imported on first lookup), plus the editors that installed packages declare under the entry
point group ``seqedit.editors`` (docs/extending.md). A plugin editor class also carries
``hparams_schema`` (a pydantic model with ``source``, ``layers``, ``templates``, ``target``
and ``stats``, e.g. a subclass of :class:`editors.hparams.ROMEHparams`) and may carry
``hparams_dir`` (a folder of ``<method>/<model>.yaml``). Every editor class takes
``(hparams, *, data_root=None, cache_root=None, progress=True, target_engine="fast")`` and
implements
:class:`editors.base.Editor`; ``target_engine`` selects how the target optimisation runs
(:data:`editors.targets.ENGINES`; ``"suffix"`` is the reference path).

``create_editor(method, loaded_model, hparams=None, *, overrides=None, ...)`` loads
``editors/hparams/<method>/<model>.yaml`` (with ``overrides``) when ``hparams`` is None.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmark.core.registry import Registry

EDITORS: Registry[Any] = Registry("editor", entry_points="seqedit.editors")
EDITORS.register("rome", "editors.rome:ROME")
EDITORS.register("memit", "editors.memit:MEMIT")
EDITORS.register("memit-seq", "editors.memit:SequentialMEMIT")
EDITORS.register("alphaedit", "editors.alphaedit:AlphaEdit")
EDITORS.register("nse", "editors.nse:NSE")
EDITORS.register("mend", "editors.mend.editor:MEND")


def create_editor(method: str, loaded_model, hparams=None, *, overrides: dict | None = None,
                  data_root: str | Path | None = None, cache_root: str | Path | None = None,
                  progress: bool = True, target_engine: str = "fast"):
    """An editor for ``method`` configured for ``loaded_model`` (a LoadedModel)."""
    from editors.hparams import check_model_layers, load_hparams

    cls = EDITORS.get(method)
    if hparams is None:
        hparams = load_hparams(method, loaded_model.entry.name, overrides)
    elif overrides:
        raise ValueError("give either hparams or overrides, not both")
    check_model_layers(method, loaded_model.entry, hparams.layers)
    return cls(hparams, data_root=data_root, cache_root=cache_root, progress=progress,
               target_engine=target_engine)
