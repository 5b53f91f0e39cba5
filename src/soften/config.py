"""Configuration: schema validation, defaults, and per-run resolution.

Snakemake validates the config with ``snakemake.utils.validate`` against the
same schema file (``workflow/schemas/config.schema.yaml`` links here); the CLI
uses :func:`load_config`, so a run launched by DVC or by hand sees exactly the
settings a Snakemake job would.
"""

from __future__ import annotations

import copy
import importlib.resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from soften.devices import resolve_device  # noqa: F401  (re-exported)
from soften.noise import parse_noise_name

#: Training defaults; each can be overridden globally (``training:``) or per dataset.
TRAINING_DEFAULTS: dict[str, Any] = {
    "epochs": 200,             # Rice et al. 2020 / SGLR §4: 200 epochs, piecewise decay
    "batch_size": 128,         # SGLR §4, ADR §5.1
    "lr": 0.1,                 # SGLR §4, ADR §5.1
    "momentum": 0.9,
    "weight_decay": 5e-4,      # SGLR §4, ADR §5.1
    "nesterov": False,
    "lr_milestones": [100, 150],  # Rice et al. piecewise schedule: /10 at 50% and 75%
    "lr_gamma": 0.1,
    "attack_bn_mode": "train",  # as Rice et al., ADR and AWP code (TRADES' and TE's code attack in eval mode)
    "amp": "auto",             # bf16 autocast on CUDA, off on CPU
    "val_attack_steps": 10,    # PGD steps for per-epoch val/test monitoring
    "test_subset": 1000,       # test examples monitored per epoch (None = all)
    "eval_batch_size": 256,
    "nan_check_every": 20,     # batches between non-finite-loss checks (a GPU sync)
}


class ConfigError(ValueError):
    """A configuration problem, reported with the offending key."""


def schema() -> dict[str, Any]:
    text = importlib.resources.files("soften").joinpath("schemas/config.schema.yaml").read_text()
    return yaml.safe_load(text)


def _extend_with_defaults(validator_class):
    validate_props = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def validate_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Validate (filling schema defaults in place) and cross-check references."""
    validator = _extend_with_defaults(jsonschema.Draft202012Validator)(schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(map(str, e.absolute_path)) or "<top level>"
        raise ConfigError(f"invalid config at '{where}': {e.message}")
    check_references(cfg)
    return cfg


def check_references(cfg: dict[str, Any]) -> None:
    """Checks a JSON schema cannot express: names that must exist elsewhere."""
    from soften.data.sources import BUILDERS
    from soften.training.methods import parse_method

    exp = cfg["experiment"]
    for name in exp["datasets"]:
        if name not in cfg["datasets"]:
            raise ConfigError(f"invalid config at 'experiment/datasets': dataset {name!r} has no entry under 'datasets'")
    for name, entry in cfg["datasets"].items():
        if entry["source"] not in BUILDERS:
            raise ConfigError(f"invalid config at 'datasets/{name}/source': unknown source {entry['source']!r}; known: {sorted(BUILDERS)}")
    for noise in exp["noise"]:
        kind, rate = parse_noise_name(noise)
        if not 0 <= rate < 1:
            raise ConfigError(f"invalid config at 'experiment/noise': rate of {noise!r} must be in [0, 1)")
    for method in exp["methods"]:
        try:
            parse_method(method)
        except ValueError as err:
            raise ConfigError(f"invalid config at 'experiment/methods': {err}") from None
        for dataset in exp["datasets"]:
            teacher_chain(cfg, dataset, method)
    for name, attack in cfg["evaluation"]["attacks"].items():
        _check_attack(f"evaluation/attacks/{name}", attack)
    transfer = cfg.get("transfer", {})
    for name, source in transfer.get("sources", {}).items():
        try:
            parse_method(source["method"])
        except ValueError as err:
            raise ConfigError(f"invalid config at 'transfer/sources/{name}/method': {err}") from None
    for name, attack in transfer.get("attacks", {}).items():
        _check_attack(f"transfer/attacks/{name}", attack, kinds=("pgd", "cw"))
    for name, attack in cfg.get("calibration", {}).get("inputs", {}).items():
        _check_attack(f"calibration/inputs/{name}", attack, kinds=("natural", "pgd", "cw", "square", "autoattack"))


def _check_attack(where: str, attack: dict[str, Any], kinds: tuple[str, ...] | None = None) -> None:
    """The attack kind exists (and is allowed here) and takes every given key."""
    from soften.evaluation.attacks import ATTACK_KINDS, KIND_PARAMS, SHARED_KEYS

    kind = attack["kind"]
    allowed = kinds or tuple(sorted(ATTACK_KINDS))
    if kind not in ATTACK_KINDS or kind not in allowed:
        raise ConfigError(f"invalid config at '{where}/kind': unknown kind {kind!r}; known: {sorted(allowed)}")
    unknown = sorted(set(attack) - SHARED_KEYS - KIND_PARAMS[kind])
    if unknown:
        raise ConfigError(f"invalid config at '{where}': unknown keys {unknown} for kind {kind!r}; "
                          f"known: {sorted(KIND_PARAMS[kind] | SHARED_KEYS)}")


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    cfg = yaml.safe_load(path.read_text()) or {}
    if overrides:
        cfg = deep_merge(cfg, overrides)
    return validate_config(cfg)


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ---------------------------------------------------------------- paths

def dataset_path(cfg: dict[str, Any], dataset: str) -> str:
    return f"{cfg['resources_dir']}/datasets/{dataset}.npz"


def noise_path(cfg: dict[str, Any], dataset: str, noise: str) -> str:
    return f"{cfg['resources_dir']}/noise/{dataset}/{noise}.npz"


def run_dir(cfg: dict[str, Any], dataset: str, noise: str, arch: str, method: str, seed: int | str) -> str:
    return f"{cfg['results_dir']}/{dataset}/{noise}/{arch}/{method}/seed{seed}"




def method_overrides(cfg: dict[str, Any], dataset: str) -> dict[str, dict[str, Any]]:
    """The config's ``methods:`` section with ``datasets.<dataset>.methods`` merged over it, per component."""
    merged = {comp: dict(params or {}) for comp, params in (cfg.get("methods") or {}).items()}
    for comp, params in ((cfg["datasets"].get(dataset) or {}).get("methods") or {}).items():
        merged[comp] = {**merged.get(comp, {}), **(params or {})}
    return merged


def run_method_params(cfg: dict[str, Any], dataset: str, method: str) -> dict[str, dict[str, Any]]:
    from soften.training.methods import method_params

    try:
        return method_params(method, method_overrides(cfg, dataset))
    except ValueError as err:
        raise ConfigError(f"invalid config at 'methods' (dataset {dataset!r}, method {method!r}): {err}") from None


def teacher_chain(cfg: dict[str, Any], dataset: str, method: str, _path: tuple[str, ...] = ()) -> list[str]:
    """Every teacher method ``method`` depends on (transitively); a cycle is a ConfigError."""
    from soften.training.methods import parse_method, teacher_methods

    if method in _path:
        raise ConfigError(f"invalid config at 'methods': teacher cycle {' -> '.join((*_path, method))}")
    try:
        parse_method(method)
    except ValueError as err:
        where = f"teacher of {_path[-1]!r}" if _path else "experiment/methods"
        raise ConfigError(f"invalid config at 'methods' ({where}): {err}") from None
    found: list[str] = []
    for teacher in teacher_methods(method, run_method_params(cfg, dataset, method)):
        found += [teacher, *teacher_chain(cfg, dataset, teacher, (*_path, method))]
    return found


def resolve_run(cfg: dict[str, Any], dataset: str, noise: str, arch: str, method: str, seed: int) -> dict[str, Any]:
    """Everything one training run needs, as a JSON-serialisable dict.

    Snakemake passes it as a rule parameter, so a change to any setting that
    affects a run re-runs exactly that run. A distillation method's spec
    lists its teachers: runs of the same dataset, noise, architecture and seed
    whose ``best.pt`` (the checkpoint Chen et al. distil from: best clean
    accuracy for the standard teacher, best robust accuracy for the
    adversarial one, both selected on the validation split) it loads.
    """
    from soften.training.methods import teacher_methods

    if dataset not in cfg["datasets"]:
        raise ConfigError(f"dataset {dataset!r} has no entry under 'datasets'")
    entry = cfg["datasets"][dataset]
    training = {**TRAINING_DEFAULTS, **cfg.get("training", {}), **entry.get("training", {})}
    teacher_chain(cfg, dataset, method)
    params = run_method_params(cfg, dataset, method)
    teachers = [
        {"method": t, "weight": float(w), "checkpoint": f"{run_dir(cfg, dataset, noise, arch, t, seed)}/best.pt"}
        for t, w in teacher_methods(method, params).items()
    ]
    return {
        "dataset": dataset,
        "noise": noise,
        "arch": arch,
        "method": method,
        "seed": int(seed),
        "dataset_npz": dataset_path(cfg, dataset),
        "noise_npz": noise_path(cfg, dataset, noise),
        "device": cfg["device"],
        "threads": cfg["threads"],
        "training": training,
        "threat": dict(entry["threat"]),
        "augment": dict(entry["augment"]),
        "method_params": params,
        **({"teachers": teachers} if teachers else {}),
    }


def resolve_eval(cfg: dict[str, Any], dataset: str, attack: str) -> dict[str, Any]:
    """Settings of one evaluation attack, with the dataset's threat model filled in."""
    ev = cfg["evaluation"]
    if attack not in ev["attacks"]:
        raise ConfigError(f"attack {attack!r} has no entry under 'evaluation/attacks'")
    entry = ev["attacks"][attack]
    return {
        "attack": attack,
        "params": attack_params(cfg, dataset, entry),
        "batch_size": ev["batch_size"],
        "n_examples": entry.get("n_examples", ev["n_examples"]),
        "device": cfg["device"],
        "threads": cfg["threads"],
    }


#: Keys of an attack entry that choose what is evaluated, not how it is attacked.
SELECTION_KEYS = ("n_examples", "checkpoints", "seeds", "methods", "noise")


def attack_params(cfg: dict[str, Any], dataset: str, entry: dict[str, Any]) -> dict[str, Any]:
    """An attack entry's parameters with the dataset's eps filled in (an explicit eps wins)."""
    threat = cfg["datasets"][dataset]["threat"]
    return {"eps": threat["eps"], **{k: v for k, v in entry.items() if k not in SELECTION_KEYS}}


def attack_applies(cfg: dict[str, Any], attack: str, ckpt: str, seed: int | str, *, method: str | None = None,
                   noise: str | None = None) -> bool:
    """Whether evaluation attack ``attack`` runs on this checkpoint. An entry's
    ``checkpoints``, ``seeds``, ``methods`` and ``noise`` lists narrow it (e.g. to
    keep AutoAttack within a CPU budget); absent means all."""
    entry = cfg["evaluation"]["attacks"][attack]
    return (ckpt in entry.get("checkpoints", [ckpt]) and int(seed) in entry.get("seeds", [int(seed)])
            and (method is None or method in entry.get("methods", [method]))
            and (noise is None or noise in entry.get("noise", [noise])))


def transfer_source_run(cfg: dict[str, Any], dataset: str, source: str) -> str:
    """Path of the source checkpoint a transfer set is crafted on."""
    src = cfg["transfer"]["sources"][source]
    return f"{run_dir(cfg, dataset, src['noise'], src['arch'], src['method'], src['seed'])}/{src['checkpoint']}.pt"


def resolve_transfer(cfg: dict[str, Any], dataset: str, source: str, attack: str) -> dict[str, Any]:
    tr = cfg["transfer"]
    if source not in tr["sources"]:
        raise ConfigError(f"transfer source {source!r} has no entry under 'transfer/sources'")
    if attack not in tr["attacks"]:
        raise ConfigError(f"transfer attack {attack!r} has no entry under 'transfer/attacks'")
    return {
        "source": source,
        "attack": attack,
        "params": attack_params(cfg, dataset, tr["attacks"][attack]),
        "n_examples": tr["attacks"][attack].get("n_examples", tr["n_examples"]),
        "batch_size": cfg["evaluation"]["batch_size"],
        "device": cfg["device"],
        "threads": cfg["threads"],
    }


def resolve_calibration(cfg: dict[str, Any], dataset: str) -> dict[str, Any]:
    cal = cfg["calibration"]
    return {
        "inputs": {name: attack_params(cfg, dataset, entry) for name, entry in cal["inputs"].items()},
        "n_bins": cal["n_bins"],
        "n_examples": cal["n_examples"],
        "batch_size": cfg["evaluation"]["batch_size"],
        "device": cfg["device"],
        "threads": cfg["threads"],
    }


def resolve_sanity(cfg: dict[str, Any], dataset: str) -> dict[str, Any]:
    san = cfg["sanity"]
    settings = {k: v for k, v in san.items() if k not in ("enabled", "checkpoints", "seeds", "methods", "noise", "n_examples")}
    return {
        "eps": cfg["datasets"][dataset]["threat"]["eps"],
        "settings": settings,
        "n_examples": san["n_examples"],
        "batch_size": cfg["evaluation"]["batch_size"],
        "device": cfg["device"],
        "threads": cfg["threads"],
    }
