"""The attack vocabulary: which attack kinds a config may name and which keys each takes.

Config validation (soften.pipeline.config) checks attack entries against it; the
evaluation stage (soften.evaluation.attacks) runs them. It sits in the pipeline, not in
``attacks/``, whose package imports torch: loading a config (every Snakemake start)
stays torch-free.
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
