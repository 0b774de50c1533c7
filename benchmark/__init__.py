"""seqedit-bench: reproducible benchmarks for sequential model editing.

Subpackages: ``benchmark`` (specs, models, data, runner, evaluation, results, CLI),
``editors`` (ROME, MEMIT, AlphaEdit, NSE behind one contract) and ``prune``
(PRUNE and RECT restraints, spectrum tracking).
"""

__version__ = "0.1.0"
#: Version of the result schema and evaluation protocol; results live in results/<SUITE_VERSION>/.
SUITE_VERSION = "v2"
