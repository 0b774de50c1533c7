"""MEND (Mitchell et al., ICLR 2022): a trained editor network maps the rank-one pieces of
a fine-tuning gradient to a weight update (docs/methods.md, MEND).

- :mod:`editors.mend.hparams` -- the typed settings (network, training, data files)
- :mod:`editors.mend.network` -- the editor network (one per distinct weight shape)
- :mod:`editors.mend.grads` -- the gradient decomposition ``∇W = Σ δ uᵀ``
- :mod:`editors.mend.store` -- the cache key and safetensors file of a trained network
- :mod:`editors.mend.editor` -- the :class:`editors.base.Editor` that applies it

This package module imports nothing so that :mod:`editors.hparams` can read the settings
schema without importing the editor.
"""
