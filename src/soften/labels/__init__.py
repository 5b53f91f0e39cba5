"""Label refiners: what the loss is computed against.

Public API: :class:`SGLR` (the SGLR label bank), :func:`adr_targets` (ADR's
rectified label for one batch), :func:`smooth_labels`, and the registry
:data:`REFINER_CLASSES` / :func:`build_refiner` the training loop uses.

Part of the research library: one refiner per method (SGLR, ADR, KD, label smoothing,
temporal ensembling, hard labels) behind one interface (``base``).

May import: the floor (``io``, ``errors``, ``devices``), ``attacks`` and ``models`` (EMA, BN modes, teacher checkpoints).
"""

from soften.labels.base import REFINER_CLASSES, Batch, Outputs, Refiner, Setup, Target, build_refiner
from soften.labels import hard as _hard  # noqa: F401  (registers 'hard')
from soften.labels.adr import ADRRefiner, adr_targets, cosine_schedule
from soften.labels.kd import KnowledgeDistillation, kd_target
from soften.labels.sglr import SGLR, SGLRRefiner
from soften.labels.smoothing import LabelSmoothing, smooth_labels
from soften.labels.temporal import TemporalBank, TemporalEnsembling, sigmoid_rampup

__all__ = [
    "SGLR", "adr_targets", "smooth_labels", "kd_target", "cosine_schedule", "sigmoid_rampup",
    "Target", "Batch", "Outputs", "Setup", "Refiner", "REFINER_CLASSES", "build_refiner",
    "SGLRRefiner", "ADRRefiner", "LabelSmoothing", "TemporalEnsembling", "TemporalBank", "KnowledgeDistillation",
]
