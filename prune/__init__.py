"""Restraints on (W0, ΔW): PRUNE and RECT; spectrum tracking.

Restraints are pure functions of weights and updates; they know nothing about editors.
An update is a dense ``out x in`` tensor or factors ``(A, B)`` with ``ΔW = A @ B.T``.
"""

from prune.linalg import ThinSVD, Update, add_updates, thin_svd, to_dense
from prune.prune import (
    ALPHAS,
    PRUNE,
    ReferenceResult,
    online_step,
    reference_prune,
    restrain_values,
)
from prune.rect import RECT
from prune.spectrum import (
    EXACT_MAX_NUMEL,
    UpdateSpectrum,
    WeightSpectrum,
    restraint_record,
    sigma_max,
    spectrum_record,
    update_spectrum,
    weight_spectrum,
)

__all__ = [
    "ALPHAS",
    "EXACT_MAX_NUMEL",
    "PRUNE",
    "RECT",
    "ReferenceResult",
    "ThinSVD",
    "Update",
    "UpdateSpectrum",
    "WeightSpectrum",
    "add_updates",
    "online_step",
    "reference_prune",
    "restrain_values",
    "restraint_record",
    "sigma_max",
    "spectrum_record",
    "thin_svd",
    "to_dense",
    "update_spectrum",
    "weight_spectrum",
]
