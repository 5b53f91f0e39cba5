"""The pipeline's stages, one function per Snakemake rule and CLI command, same name.

Each takes file paths and a resolved spec (``soften.pipeline.config.resolve_*``) and
writes its outputs atomically; the library does the work. ``python -m soften
STAGE`` (and so Snakemake and DVC) calls exactly these.

| rule / command      | function               | reads                         | writes                        |
|---------------------|------------------------|-------------------------------|-------------------------------|
| fetch               | :func:`fetch`          | a dataset entry               | dataset npz + json            |
| noise               | :func:`noise`          | dataset npz                   | noisy-label npz + json        |
| train               | :func:`train`          | run spec, npz files           | best.pt, final.pt, history    |
| evaluate            | :func:`evaluate`       | checkpoint, attack specs      | one JSON per attack           |
| evaluate_attack     | :func:`evaluate_attack` | checkpoint, attack spec      | one JSON                      |
| calibrate           | :func:`calibrate`      | checkpoint, calibration spec  | one JSON                      |
| sanity              | :func:`sanity`         | checkpoint, sanity spec       | one JSON                      |
| craft_transfer      | :func:`craft_transfer` | source checkpoint, spec       | transfer set (.pt)            |
| evaluate_transfer   | :func:`evaluate_transfer` | checkpoint, transfer sets  | one JSON per set              |
| tables              | :func:`tables`         | result JSON / history, spec   | table .md/.csv/.tex/.html     |
| figures             | :func:`figures`        | history / result JSON, spec   | one PNG                       |
| verdict             | :func:`verdict`        | every table's .csv, claims    | verdict .md/.json/.html       |
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

from soften.io import save_json, save_npz, save_text, sidecar_path

log = logging.getLogger("soften.pipeline.stages")

#: Wall-clock fields the library's evaluation records carry. A stage's declared outputs
#: leave them out and its log gets them (training and transfer sets never write them:
#: soften.training.loop, soften.evaluation.transfer): an output is then a function of the job's inputs,
#: params and code, so a rerun reproduces its bytes, and ``dvc status`` after a
#: Snakemake run (or ``snakemake -n`` after ``dvc repro``) finds nothing changed.
TIMING_KEYS = frozenset({"seconds", "total_seconds", "select_test_seconds"})


def _untimed(record: Any, where: str = "") -> tuple[Any, dict[str, Any]]:
    """``record`` without :data:`TIMING_KEYS` at any depth, and what was removed
    (dotted key -> value)."""
    if isinstance(record, dict):
        kept, removed = {}, {}
        for k, v in record.items():
            key = f"{where}.{k}" if where else str(k)
            if k in TIMING_KEYS:
                removed[key] = v
            else:
                kept[k], sub = _untimed(v, key)
                removed.update(sub)
        return kept, removed
    if isinstance(record, list):
        pairs = [_untimed(v, f"{where}[{i}]") for i, v in enumerate(record)]
        return [p[0] for p in pairs], {k: v for _, sub in pairs for k, v in sub.items()}
    return record, {}


def _log_timings(out: str | Path, removed: dict[str, Any]) -> None:
    if removed:
        log.info("timings of %s (seconds): %s", out, json.dumps(removed, sort_keys=True))


def _save_result(record: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """Write a result JSON without its timings (logged instead); return the full record."""
    kept, removed = _untimed(record)
    save_json(kept, out)
    _log_timings(out, removed)
    return record


def fetch(entry: dict[str, Any], out: str | Path, download_dir: str | Path | None = None) -> dict[str, Any]:
    """Build the dataset described by a config ``datasets`` entry into ``out`` (npz + json)."""
    from soften.data import fetch_dataset

    options = {**entry.get("options", {}), "val_size": entry.get("val_size", 0), "val_seed": entry.get("val_seed", 0)}
    if entry.get("subset"):
        options["subset"] = entry["subset"]
    # Downloads are cached (verified, renamed into place only when complete) in
    # download_dir, else the dataset's options, else beside the datasets folder:
    # resources/datasets/x.npz -> resources/downloads.
    if download_dir:
        options["download_dir"] = str(download_dir)
    options.setdefault("download_dir", str(Path(out).parent.parent / "downloads"))
    return fetch_dataset(entry["source"], options, out)


def noise(dataset_npz: str | Path, noise: str, seed: int, out: str | Path) -> dict[str, Any]:
    """Inject ``noise`` (e.g. 'symmetric-0.4') into the training labels only."""
    from soften.data import load_dataset_npz
    from soften.data.noise import inject_label_noise, parse_noise_name

    kind, rate = parse_noise_name(noise)
    arrays = load_dataset_npz(dataset_npz)
    clean = arrays["y_train"]
    names = [str(c) for c in arrays["class_names"]]
    noisy, flipped = inject_label_noise(clean, len(names), kind, rate, seed, class_names=names)
    save_npz(out, y_train_noisy=noisy, flipped=flipped)
    meta = {"noise": noise, "kind": kind, "rate": rate, "seed": seed, "n": int(clean.size),
            "n_flipped": int(flipped.sum()), "realised_rate": float(flipped.mean()) if clean.size else 0.0}
    save_json(meta, sidecar_path(out))
    return meta


def train(spec: dict[str, Any], out_dir: str | Path, *, stop_after_epoch: int | None = None,
          keep_resume_state: bool | None = None) -> list[dict[str, Any]]:
    """Train (or resume) one run into ``out_dir``.

    ``keep_resume_state`` False drops ``last.pt`` once the run has finished (config
    ``keep_checkpoints: false``; the workflow passes it as SOFTEN_KEEP_CHECKPOINTS=0).
    """
    import os

    from soften.training.loop import train as train_run

    history = train_run(spec, out_dir, stop_after_epoch=stop_after_epoch)
    out = Path(out_dir)
    finished = (out / "final.pt").exists() and len(history) >= spec["training"]["epochs"]
    if keep_resume_state is None:
        keep_resume_state = os.environ.get("SOFTEN_KEEP_CHECKPOINTS", "1") != "0"
    if finished and not keep_resume_state:
        (out / "last.pt").unlink(missing_ok=True)
    return history


def _pairs(checkpoints: Sequence, items: Sequence, outs: Sequence) -> list[tuple[Any, Any, Any]]:
    """(checkpoint, item, output) for outputs given checkpoint-major, as the rules list them."""
    if len(outs) != len(checkpoints) * len(items):
        raise ValueError(f"give one output per checkpoint and item, checkpoint-major ({len(checkpoints)} checkpoints "
                         f"x {len(items)} = {len(checkpoints) * len(items)}, got {len(outs)} outputs)")
    return [(c, item, outs[i * len(items) + j]) for i, c in enumerate(checkpoints) for j, item in enumerate(items)]


def evaluate(checkpoints: Sequence[str | Path], dataset_npz: str | Path, specs: Sequence[dict[str, Any]],
             outs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Evaluate a run's checkpoints under several attacks, one JSON each, in one process."""
    from soften.evaluation import evaluate_checkpoint

    return [_save_result(evaluate_checkpoint(c, dataset_npz, spec), out) for c, spec, out in _pairs(checkpoints, specs, outs)]


def evaluate_attack(checkpoint: str | Path, dataset_npz: str | Path, spec: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """One attack on one checkpoint, in its own job: AutoAttack and Square (the costly
    ones), and attacks only some experiments use."""
    from soften.evaluation import evaluate_checkpoint

    return _save_result(evaluate_checkpoint(checkpoint, dataset_npz, spec), out)


def calibrate(checkpoints: Sequence[str | Path], dataset_npz: str | Path, spec: dict[str, Any],
              outs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """ECE and reliability data of a run's checkpoints, one JSON each."""
    from soften.evaluation import calibrate_checkpoint

    return [_save_result(calibrate_checkpoint(c, dataset_npz, spec), out) for c, _, out in _pairs(checkpoints, [spec], outs)]


def sanity(checkpoints: Sequence[str | Path], dataset_npz: str | Path, spec: dict[str, Any],
           outs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Gradient-masking checks of a run's checkpoints, one JSON each."""
    from soften.evaluation import sanity_checkpoint

    return [_save_result(sanity_checkpoint(c, dataset_npz, spec), out) for c, _, out in _pairs(checkpoints, [spec], outs)]


def craft_transfer(checkpoint: str | Path, dataset_npz: str | Path, spec: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """Adversarial test examples crafted on a transfer source's checkpoint into ``out`` (.pt:
    ``x_adv`` in [0, 1], labels, meta without timings); returns the meta."""
    from soften.evaluation import craft_transfer as craft

    return craft(checkpoint, dataset_npz, spec, out)


def evaluate_transfer(checkpoints: Sequence[str | Path], crafted: Sequence[str | Path], outs: Sequence[str | Path],
                      spec: dict[str, Any]) -> list[dict[str, Any]]:
    """A target run's checkpoints on every transfer set, one JSON each (checkpoint-major)."""
    from soften.evaluation import evaluate_transfer as evaluate_set

    return [_save_result(evaluate_set(c, s, spec), out) for c, s, out in _pairs(checkpoints, crafted, outs)]


def tables(inputs: Sequence[str | Path], spec: dict[str, Any], out_md: str | Path) -> str:
    """One experiment's table (.md, and .csv/.tex/.html beside it) from its result files."""
    from soften.reporting.table_html import markdown_page
    from soften.reporting.tables import make_table

    md = make_table(inputs, spec, out_md)
    save_text(markdown_page(md, spec.get("title") or spec["name"]), Path(out_md).with_suffix(".html"))
    return md


def figures(inputs: Sequence[str | Path], spec: dict[str, Any], out: str | Path) -> Path:
    """One experiment's figure, by its kind."""
    from soften.reporting.plots import experiment_figure

    return experiment_figure(inputs, spec, out)


def verdict(inputs: Sequence[str | Path], spec: dict[str, Any], out_md: str | Path) -> str:
    """The results directory's verdict page (.md, and .json beside it) from every table's .csv:
    each cell against the paper, each claim tested. A failed reproduction is a result: it
    returns normally."""
    from soften.reporting.table_html import markdown_page
    from soften.reporting.verdict_page import build

    md, record = build(inputs, spec)
    save_json(record, Path(out_md).with_suffix(".json"))
    save_text(markdown_page(md, f"Verdict: {spec['results_dir']}"), Path(out_md).with_suffix(".html"))
    save_text(md, out_md)
    return md
