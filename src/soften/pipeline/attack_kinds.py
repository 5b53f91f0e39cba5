"""The attack vocabulary: which attack kinds exist and which keys each takes.

Config validation (soften.pipeline.config) and the evaluation stage (soften.evaluation.attacks)
both read it, so neither imports the other.
"""

from __future__ import annotations

#: Keys every attack entry takes besides its kind's own.
SHARED_KEYS = frozenset({"kind", "n_examples"})

#: Keys each kind takes (checked at config load).
KIND_PARAMS: dict[str, frozenset[str]] = {
    "natural": frozenset(),
    "pgd": frozenset({"steps", "alpha", "random_start", "seed", "eps"}),
    "cw": frozenset({"steps", "alpha", "random_start", "seed", "eps", "kappa"}),
    "autoattack": frozenset({"version", "seed", "aa_batch_size", "settings", "norm", "attacks", "eps", "progress"}),
    "square": frozenset({"version", "seed", "aa_batch_size", "settings", "norm", "eps", "progress"}),
}

KINDS = tuple(KIND_PARAMS)
