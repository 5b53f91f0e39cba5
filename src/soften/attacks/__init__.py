"""Attacks. Contract for every attack here: inputs are images in [0, 1]
(normalisation lives inside the model), outputs stay in [0, 1] and within the
L-inf eps-ball of the input. Attacks never change the model's train/eval mode:
callers choose it explicitly with :func:`model_mode`.

Part of the research library, its lowest package: the attacks themselves (PGD, CW
losses), used by training (adversarial examples), evaluation and the label refiners.
What a config may write under an attack entry is the pipeline's vocabulary
(``soften.pipeline.attack_kinds``), kept there so that validating a config never
imports torch.

May import: nothing of soften (torch only).
"""

from soften.attacks.cw import cw_loss, logit_margin
from soften.attacks.pgd import LOSSES, ce_loss, model_mode, pgd

__all__ = ["LOSSES", "ce_loss", "cw_loss", "logit_margin", "model_mode", "pgd"]
