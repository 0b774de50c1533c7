"""The core every other part of the suite may use, and that uses nothing else of it.

Modules: ``errors`` (named error types), ``io`` (atomic writes, hashing, file locks),
``settings`` (data/cache roots, offline mode, repository paths), ``registry`` (lazy
name registries with did-you-mean errors), ``scoring`` (teacher-forced target scoring),
``arch`` (model entries, architecture facts, weight-layout helpers, the loaded-model
type) and ``requests`` (the edit request type).

``editors/`` and ``prune/`` import only this package (plus torch and numpy); everything
that runs grids, evaluates or publishes sits above them. ``tests/test_layers.py`` keeps
it so.
"""
