"""Evaluation: every attack runs the model in eval mode and fp32.

- :func:`evaluate_checkpoint`: one checkpoint x one attack (natural, PGD, CW-inf,
  AutoAttack, Square) -> accuracy + per-example flags.
- :func:`autoattack`: the AutoAttack adapter (pyautoattack or GitHub autoattack).
- :mod:`~soften.evaluation.calibration`: ECE and reliability data.
- :mod:`~soften.evaluation.transfer`: black-box transfer sets and their evaluation.
- :mod:`~soften.evaluation.sanity`: gradient-masking sanity checks.

Part of the research library: every measurement of a trained checkpoint; one JSON
record per checkpoint and attack, with provenance.

May import: the floor (``io``, ``errors``, ``devices``), ``attacks``, ``models`` and ``data``.
"""

from soften.evaluation.attacks import ATTACK_KINDS
from soften.evaluation.autoattack import autoattack
from soften.evaluation.calibration import calibrate_checkpoint, expected_calibration_error, reliability_bins
from soften.evaluation.common import decode_mask, encode_mask
from soften.evaluation.evaluate import evaluate_checkpoint
from soften.evaluation.sanity import sanity_checkpoint, sanity_report
from soften.evaluation.transfer import craft_transfer, evaluate_transfer

__all__ = [
    "ATTACK_KINDS", "autoattack", "calibrate_checkpoint", "craft_transfer", "decode_mask", "encode_mask",
    "evaluate_checkpoint", "evaluate_transfer", "expected_calibration_error", "reliability_bins",
    "sanity_checkpoint", "sanity_report",
]
