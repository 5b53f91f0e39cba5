"""``show-config``: what an experiment file resolves to, and where each value comes from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from soften.pipeline import layout
from soften.pipeline.config import TRAINING_SOURCES, ConfigError, layered, load_config, required_runs, resolve_run


def _flat(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(data, dict) and data:
        return [item for k, v in data.items() for item in _flat(v, f"{prefix}{k}.")]
    return [(prefix[:-1], data)]


def _origin(key: str, origins: dict[str, str]) -> str | None:
    """The file (or --config) that set ``key`` or a mapping above it."""
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in origins:
            return origins[".".join(parts[:i])]
    return None


def _lines(items: Iterable[tuple[str, Any, str]]) -> str:
    rows = [(k, json.dumps(v), why) for k, v, why in items]
    width = max((len(k) + len(v) for k, v, _ in rows), default=0) + 3
    return "".join(f"{k}: {v}".ljust(width) + f"# {why}\n" for k, v, why in rows)


def show_config(paths: list[str | Path], overrides: dict[str, Any] | None = None, *, run: str | None = None,
                experiment: str | None = None) -> str:
    """The config from ``paths`` and ``overrides``, resolved, one ``key: value  # origin``
    line per leaf; with ``run`` (``DATASET/NOISE/ARCH/METHOD/seedK``) that run's spec
    instead, with ``experiment`` that experiment's run directories."""
    cfg = load_config(paths, overrides)
    _, origins = layered(paths, overrides)
    head = f"# {' + '.join(map(str, paths))}{' + --config' if overrides else ''}, resolved (scale: {cfg['scale']})\n"
    if run:
        return head + _run_lines(cfg, run, origins)
    if experiment:
        if experiment not in cfg["experiments"]:
            raise ConfigError(f"experiment {experiment!r} has no entry under 'experiments' (known: {sorted(cfg['experiments'])})")
        runs = layout.experiment_runs(cfg, experiment)
        return head + f"# experiment {experiment}: {len(runs)} runs\n" + "".join(f"{layout.run_dir(cfg, r)}\n" for r in runs)
    items = [(k, v, _origin(k, origins) or "default (src/soften/pipeline/schemas/config.schema.yaml)") for k, v in _flat(cfg)]
    n = len(required_runs(cfg))
    return head + _lines(items) + f"# {n} training runs in all (experiments, teachers, transfer sources)\n"


def _run_lines(cfg: dict[str, Any], run: str, origins: dict[str, str]) -> str:
    from soften.training.methods import COMPONENT_SOURCES

    try:
        parsed = layout.parse_run(run)
    except ValueError as err:
        raise ConfigError(f"--run: {err}") from None
    dataset, noise, arch, method, seed = parsed.dataset, parsed.noise, parsed.arch, parsed.method, parsed.seed
    spec = resolve_run(cfg, dataset, noise, arch, method, seed)
    items = []
    for key, value in _flat(spec):
        head, _, rest = key.partition(".")
        if head == "training":
            why = (_origin(f"datasets.{dataset}.training.{rest}", origins) or _origin(f"training.{rest}", origins)
                   or f"default: {TRAINING_SOURCES.get(rest, 'soften.pipeline.config.TRAINING_DEFAULTS')}")
        elif head == "method_params":
            comp, _, name = rest.partition(".")
            name = name.split(".")[0]
            why = (_origin(f"variants.{method}.params.{comp}.{name}", origins)
                   or _origin(f"datasets.{dataset}.methods.{comp}.{name}", origins)
                   or _origin(f"methods.{comp}.{name}", origins)
                   or f"default: {COMPONENT_SOURCES.get(f'{comp}.{name}', 'soften.training.methods.COMPONENT_DEFAULTS')}")
        elif head in ("threat", "augment"):
            why = _origin(f"datasets.{dataset}.{key}", origins) or "default (schema)"
        elif head in ("device", "threads", "scale", "tracking", "gpu_slots_per_device"):
            why = _origin(head, origins) or "default (schema)"
            if head != "scale":
                why += "; where the job runs (or how it reports), not part of the run's identity"
        elif head == "width_factor":
            why = "smoke scale: every architecture at this fraction of its channels (soften.pipeline.config.SMOKE)"
        elif head == "data_subset":
            why = (_origin(f"datasets.{dataset}.subset.{rest}", origins) or _origin(f"datasets.{dataset}.subset", origins)
                   or ("smoke scale" if cfg["scale"] == "smoke" else "none"))
        else:
            why = "the run's identity (soften.pipeline.layout)"
        if cfg["scale"] == "smoke" and head in ("training", "threat", "method_params"):
            why += " (smoke scale may shrink it)"
        items.append((key, value, why))
    return _lines(items)
