"""Hard (one-hot) labels: the target of standard training, PGD-AT and TRADES."""

from __future__ import annotations

from soften.labels.base import Refiner, register

HardLabels = register("hard")(Refiner)
