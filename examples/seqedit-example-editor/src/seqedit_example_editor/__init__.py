"""An out-of-tree seqedit-bench editor (entry point group ``seqedit.editors``)."""

from seqedit_example_editor.editor import RankOneEditor, RankOneHparams

__all__ = ["RankOneEditor", "RankOneHparams"]
