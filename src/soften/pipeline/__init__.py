"""The pipeline that runs the library: from config files to jobs, for Snakemake and DVC.

- ``config``: load, merge and validate config files (schema in ``schemas/``; the
  attack-entry vocabulary in ``attack_kinds``), and resolve each job's spec;
- ``layout``: where every artifact lives, and which runs and evaluations each
  experiment needs;
- ``jobs``: each stage's command and params, every job of a config;
- ``stages``: one function per stage (``python -m soften STAGE``, and the Snakemake
  rule of the same name): read inputs, call the library or the reporting, write
  outputs; it never imports ``config``, so that a job runs no config code;
- ``codedeps``: which source files each stage's job imports, and their hash;
- ``dvc_pipeline``: ``dvc.yaml``, generated from ``jobs``;
- ``lifetime``: a job ends with the Snakemake that started it.

Belongs here: whatever turns a config into jobs and runs one job; not what a job
computes (the library) nor how results are shown (``reporting``). Device resolution is
not here: a job resolves its device inside the library (``soften.devices``); the
pipeline only names the placement keys.

May import: the floor (``io``, ``errors``, ``devices``), the library (``attacks``, ``models``, ``data``, ``labels``,
``evaluation``, ``training``) and ``reporting``.
"""
