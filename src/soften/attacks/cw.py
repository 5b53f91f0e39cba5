"""The Carlini-Wagner margin loss for L-inf PGD ("CW-inf", Carlini & Wagner 2017).

Robustness papers (CAT, FAT, GAIRAT, MART, AWP; SGLR Tab. B.3) report "CW-inf"
as PGD whose loss is the logit margin instead of cross-entropy:

    margin(z, y) = max_{j != y} z_j - z_y          (> 0  <=>  misclassified)
    loss         = min(margin, kappa)               (kappa = 50 in those papers)

Ascending this loss pushes the best wrong logit above the true one until the
margin exceeds ``kappa``. Its gradient equals that of the common reference
``-clamp(z_y - max_{j!=y} z_j + kappa, min=0)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_KAPPA = 50.0


def logit_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample ``max_{j != y} z_j - z_y``; ``y`` class indices (or probability rows: argmax)."""
    if y.dtype.is_floating_point:
        y = y.argmax(1)
    logits = logits.float()
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return other - true


def cw_loss(logits: torch.Tensor, y: torch.Tensor, kappa: float = DEFAULT_KAPPA) -> torch.Tensor:
    """Per-sample CW-inf loss ``min(margin, kappa)`` (to be maximised)."""
    return logit_margin(logits, y).clamp(max=kappa)
