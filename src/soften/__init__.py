"""soften: a reproducibility pipeline for soft-label adversarial training.

The top level is the layering; imports point down this list, never up
(``tests/test_layers.py`` checks it):

- ``__main__``: the command line (``python -m soften COMMAND``);
- ``tools/``: show-config, export, bench, plan;
- ``pipeline/``: config, layout, jobs, stages, code hashing, DVC generation;
- ``reporting/``: tables, figures, the published numbers;
- the research library: ``training/`` -> ``labels/``, ``evaluation/`` -> ``models/``,
  ``data/`` (with label noise) -> ``attacks/``;
- the floor: ``io`` (atomic writes, safe loads), ``errors``, ``devices`` (which device a
  job computes on, resolved inside the job by training and evaluation).

Each package's docstring says what belongs there and what it may import.
"""

__version__ = "0.1.0"
