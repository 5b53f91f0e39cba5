"""Training: methods (objective + label refiner + extras), the loop, checkpoints.

The top of the research library: one run from a resolved spec to ``best.pt``,
``final.pt`` and ``history.csv`` (and the files the trainer keeps beside them in the
run's folder: ``last.pt``, TensorBoard events).

May import: the floor (``io``, ``errors``, ``devices``), ``attacks``, ``models``, ``data`` and ``labels``.
"""
