"""The tools around the pipeline: commands a user runs besides the stages.

- ``show``: ``soften show-config``, every resolved setting and where it came from;
- ``robustbench``: ``soften export``, a checkpoint as a RobustBench model entry;
- ``bench``: ``soften bench``, training and evaluation cost on this machine;
- ``plan``: ``soften plan``, the runs still to train and their cost, from bench's results;
- ``cluster``: what each model job asks a scheduler for (GPUs, CPUs, memory, wall time), from
  its spec and plan's cost model; only the workflow's rules import it.

Belongs here: commands that read configs, checkpoints or benchmarks for a person;
no stage of the pipeline imports them (the workflow's rules may).

May import: everything below: the floor (``io``, ``errors``, ``devices``), the library (``attacks``, ``models``, ``data``,
``labels``, ``evaluation``, ``training``), ``reporting`` and ``pipeline``.
"""
