"""soften: a reproducibility pipeline for soft-label adversarial training."""

__version__ = "0.1.0"
