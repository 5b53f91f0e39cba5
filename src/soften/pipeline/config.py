"""Configuration: loading, validation, the smoke scale, and per-job resolution.

One loader, :func:`load_config`, serves the Snakefile, the CLI and DVC:

- it reads exactly the files it is given (the experiment file, then any
  overlays) and nothing else: an experiment file never inherits from the digits
  demo or any other file;
- files and overrides merge key by key; a mapping merges into a mapping, any
  other value replaces, an empty mapping or list *empties* the key and ``null``
  removes it (so it takes its documented default);
- absent keys take the schema's defaults, then cross-references are checked;
- ``scale: smoke`` shrinks the run (:data:`SMOKE`).

Every value a job uses is then traceable to one of the files or to a documented
default: :data:`TRAINING_DEFAULTS` and :data:`soften.training.methods.COMPONENT_DEFAULTS`
cite their paper sections, and ``python -m soften show-config`` prints the
resolved config or a run's spec with the origin of every value.
"""

from __future__ import annotations

import copy
import importlib.resources
import math
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from soften.pipeline import layout
from soften.pipeline.attack_kinds import KIND_PARAMS, SHARED_KEYS
from soften.pipeline.codedeps import stage_names
from soften.errors import ConfigError  # defined below everything; soften.pipeline.config.ConfigError stays valid
from soften.data.noise import parse_noise_name

#: Training defaults, each with its source; overridden by ``training:`` then ``datasets.<name>.training``.
TRAINING_DEFAULTS: dict[str, Any] = {
    "epochs": 200,             # SGLR §4, ADR §5.1 (CIFAR): 200 epochs
    "batch_size": 128,         # ADR §5.1 (SGLR does not state it; Rice et al. 2020 use 128)
    "lr": 0.1,                 # SGLR §4, ADR §5.1
    "momentum": 0.9,           # SGLR §4, ADR §5.1
    "weight_decay": 5e-4,      # SGLR §4, ADR §5.1
    "nesterov": False,         # SGLR §4 ("SGD with a momentum of 0.9"); ADR §5.1 uses Nesterov
    "lr_milestones": [100, 150],  # SGLR §4: /10 at epochs 100 and 150; ADR §5.1: at 50% and 75%
    "lr_gamma": 0.1,           # SGLR §4, ADR §5.1
    "attack_bn_mode": "train",  # reference code of Rice et al., ADR and AWP (docs/methods.md)
    "amp": "auto",             # bf16 autocast when training on CUDA, off on CPU (evaluation is fp32); soften.training.speed
    "channels_last": False,    # NHWC weights and inputs (speed only; soften.training.speed)
    "compile": False,          # torch.compile the model: true (inductor) or a backend name (speed only)
    "optimizer_kernel": "auto",  # SGD kernel: fused on CUDA, PyTorch's default on CPU (speed only)
    "val_attack_steps": 10,    # ADR §5.1: PGD-10 on the validation set selects the best checkpoint
    # Checkpoint selection: validation -> best.pt (soften's rule); adding test also keeps
    # best_test.pt, chosen by PGD-10 on the whole test set each epoch, as the authors' code
    # (SGLR main_adv.py, ADR advTrainer.py; docs/evaluation.md "Protocols").
    "select_on": ["validation"],
    "test_subset": 1000,       # test examples monitored per epoch, for the curves only (None = all)
    "monitor_every": 1,        # epochs between test/train monitoring (curves only; validation runs every epoch)
    "eval_batch_size": 256,    # monitoring batch size (speed only)
    "nan_check_every": 20,     # batches between non-finite-loss checks (a GPU sync)
}
TRAINING_SOURCES: dict[str, str] = {
    "epochs": "SGLR §4, ADR §5.1", "batch_size": "ADR §5.1", "lr": "SGLR §4, ADR §5.1",
    "momentum": "SGLR §4, ADR §5.1", "weight_decay": "SGLR §4, ADR §5.1", "nesterov": "SGLR §4",
    "lr_milestones": "SGLR §4", "lr_gamma": "SGLR §4, ADR §5.1", "attack_bn_mode": "reference code (docs/methods.md)",
    "amp": "soften (speed; evaluation is fp32)", "val_attack_steps": "ADR §5.1",
    "select_on": "soften (validation); test = the authors' code (docs/evaluation.md)", "test_subset": "soften (curves only)",
    "monitor_every": "soften (curves only)",
    "eval_batch_size": "soften (speed)", "nan_check_every": "soften (speed)",
    "channels_last": "soften (speed)", "compile": "soften (speed)", "optimizer_kernel": "soften (speed)",
}

#: The smoke scale: the same DAG on a handful of images. Two epochs, so that every
#: epoch-scheduled part of a method (TE's ramp, SWA, LR decays) runs at least once;
#: one training step per epoch and one PGD step, because a WRN-34-10 forward-backward
#: pass costs ~1 CPU-second per 8 images and CI runs ~110 paper runs this way.
SMOKE: dict[str, Any] = {
    "subset": {"train": 4, "val": 2, "test": 4},
    "val_size": 2,
    "epochs": 2,
    "batch_size": 4,
    "threat_steps": 1,        # training PGD steps
    "attack_steps": 1,        # at most this many steps for PGD/CW evaluations, transfer, calibration, monitoring
    "n_examples": 4,          # test images per evaluation
    "monitor_examples": 2,    # test / training images monitored per epoch
    "sanity": {"eps_multipliers": [1], "eps_steps": 1, "steps": [1, 2]},
    # AutoAttack's attacks all run (version standard, the package's code) with small
    # budgets: at full budget one surviving point costs WRN-34-10 ~25 CPU-minutes.
    "autoattack_settings": {"apgd.n_iter": 2, "apgd_targeted.n_iter": 2, "apgd_targeted.n_target_classes": 1,
                            "fab.n_iter": 2, "fab.n_target_classes": 1, "square.n_queries": 10},
    # The same cut for ``version: torchattacks-3.3`` (torchattacks' attribute names).
    "torchattacks_settings": {"apgd.steps": 2, "apgd_targeted.steps": 2, "apgd_targeted.n_target_classes": 1,
                              "fab.steps": 2, "fab.n_target_classes": 1, "square.n_queries": 10},
    "threads": 1,
    # Every architecture at 1/8 of its channels (same depth, blocks and strides): WRN-34-10's
    # 6.6 GFLOP per CIFAR image become 0.1, and ADR's 18 WRN runs stop being most of the
    # smoke DAG's CPU time. The published widths are checked by tests/test_models.py and
    # timed by `soften bench`.
    "width_factor": 0.125,
}

#: Experiment names that would shadow a workflow rule (an experiment is also a Snakemake target).
RESERVED_NAMES = frozenset({"all", *stage_names()})


def schema() -> dict[str, Any]:
    """The config's JSON schema (src/soften/pipeline/schemas/config.schema.yaml) as a dict."""
    text = importlib.resources.files("soften").joinpath("pipeline/schemas/config.schema.yaml").read_text()
    return yaml.safe_load(text)


# ------------------------------------------------------------------ merging and loading

def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``: mappings merge key by key, anything else replaces;
    ``{}``/``[]`` empty a key and ``None`` removes it."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and value and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


deep_merge = merge


def read_yaml(path: str | Path) -> dict[str, Any]:
    """One config file as a mapping ({} when empty); ConfigError naming the file and line if missing or not YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def _typed(value: Any) -> Any:
    """Snakemake parses nested ``--config`` values with YAML's base loader (all strings): retype them."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, str):
        try:
            return yaml.safe_load(value) if value else value
        except yaml.YAMLError:
            return value
    return value


def _as_list(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(paths, (str, Path)):
        return [Path(paths)]
    return [Path(p) for p in paths]


def layered(paths: str | Path | Iterable[str | Path], overrides: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """Merge the files and overrides; also return each leaf's origin (dotted key -> file or '--config')."""
    cfg: dict[str, Any] = {}
    origins: dict[str, str] = {}
    layers = [(read_yaml(p), str(p)) for p in _as_list(paths)]
    if overrides:
        layers.append(({k: _typed(v) if isinstance(v, (dict, list)) else v for k, v in overrides.items()}, "--config"))
    for data, origin in layers:
        cfg = merge(cfg, data)
        for key in _leaves(data):
            origins = {k: v for k, v in origins.items() if not (k == key or k.startswith(key + "."))}
            origins[key] = origin
    return cfg, origins


def _leaves(data: Any, prefix: str = "") -> list[str]:
    if isinstance(data, dict) and data:
        return [leaf for k, v in data.items() for leaf in _leaves(v, f"{prefix}{k}.")]
    return [prefix[:-1]] if prefix else []


def _with_defaults(validator_class):
    validate_props = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _amp_off(cfg: dict[str, Any]) -> None:
    """YAML reads an unquoted ``amp: off`` as the boolean false: it means ``"off"``."""
    sections = [cfg.get("training")] + [d.get("training") for d in (cfg.get("datasets") or {}).values()
                                        if isinstance(d, dict)]
    for tr in sections:
        if isinstance(tr, dict) and tr.get("amp") is False:
            tr["amp"] = "off"


def validate_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Validate (filling schema defaults in place) and cross-check references."""
    _amp_off(cfg)
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(map(str, e.absolute_path)) or "<top level>"
        raise ConfigError(f"invalid config at '{where}': {e.message}")
    check_references(cfg)
    return cfg


def load_config(paths: str | Path | Iterable[str | Path], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The validated config from these files (merged in order) and overrides, at its scale."""
    cfg, _ = layered(paths, overrides)
    cfg = with_seeds(validate_config(cfg))
    if cfg["scale"] == "smoke":
        cfg = validate_config(smoke_config(cfg))
    return cfg


def with_seeds(cfg: dict[str, Any]) -> dict[str, Any]:
    """The top-level ``seeds: N``, when set, as every experiment's seeds 0 .. N−1 (in place)."""
    if cfg.get("seeds"):
        for exp in cfg["experiments"].values():
            exp["seeds"] = list(range(int(cfg["seeds"])))
    return cfg


def smoke_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The smoke scale of a validated config: other folders, a few images per split."""
    out = copy.deepcopy(cfg)
    out["results_dir"] = f"{cfg['results_dir'].rstrip('/')}-smoke"
    out["resources_dir"] = f"{cfg['resources_dir'].rstrip('/')}-smoke"
    out["threads"] = SMOKE["threads"]
    out["keep_checkpoints"] = False     # ~110 runs of real architectures: GBs of checkpoints otherwise
    for entry in out["datasets"].values():
        entry["val_size"] = SMOKE["val_size"]
        entry["subset"] = dict(SMOKE["subset"])
    out["scale"] = "smoke"
    return out


def _scale_epoch(epoch: int, full: int, smoke: int) -> int:
    return max(1, min(smoke, math.ceil(epoch * smoke / full)))


def smoke_run(spec: dict[str, Any]) -> dict[str, Any]:
    """A run spec at the smoke scale: every epoch-valued knob scaled to the shorter run."""
    full, smoke = spec["training"]["epochs"], SMOKE["epochs"]
    tr = dict(spec["training"], epochs=smoke, batch_size=SMOKE["batch_size"], test_subset=SMOKE["monitor_examples"],
              lr_milestones=sorted({_scale_epoch(m, full, smoke) for m in spec["training"]["lr_milestones"] if m <= full}),
              val_attack_steps=min(spec["training"]["val_attack_steps"], SMOKE["attack_steps"]))
    params = copy.deepcopy(spec["method_params"])
    for comp in params.values():
        for key in [k for k in comp if k.endswith("_epoch")]:
            comp[key] = _scale_epoch(int(comp[key]), full, smoke)
    threat = dict(spec["threat"], steps=min(spec["threat"]["steps"], SMOKE["threat_steps"]))
    return {**spec, "training": tr, "method_params": params, "threat": threat, "width_factor": SMOKE["width_factor"]}


def smoke_attack(params: dict[str, Any]) -> dict[str, Any]:
    """Attack parameters at the smoke scale: PGD/CW steps capped, AutoAttack's and
    Square's budgets cut (recorded as ``settings``, so tables mark the cells)."""
    if params["kind"] in ("pgd", "cw"):
        return {**params, "steps": min(int(params.get("steps", 20)), SMOKE["attack_steps"])}
    if params["kind"] == "autoattack" and params.get("version") == "torchattacks-3.3":
        return {**params, "settings": {**SMOKE["torchattacks_settings"], **(params.get("settings") or {})}}
    if params["kind"] in ("autoattack", "square"):
        names = {"square"} if params["kind"] == "square" else {"apgd", "apgd_targeted", "fab", "square"}
        cut = {k: v for k, v in SMOKE["autoattack_settings"].items() if k.split(".")[0] in names}
        return {**params, "settings": {**cut, **(params.get("settings") or {})}}
    return params


# ------------------------------------------------------------------ cross-references

def check_references(cfg: dict[str, Any]) -> None:
    """Checks a JSON schema cannot express: names that must exist elsewhere, grammars, scopes."""
    from soften.data.sources import BUILDERS

    named = [("dataset", "datasets", cfg["datasets"]), ("attack", "evaluation/attacks", cfg["evaluation"]["attacks"]),
             ("attack", "transfer/attacks", cfg["transfer"]["attacks"]), ("source", "transfer/sources", cfg["transfer"]["sources"])]
    for kind, where, names in named:
        for n in names:
            _check_name(kind, f"{where}/{n}", n)
    for name, entry in cfg["datasets"].items():
        if entry["source"] not in BUILDERS:
            raise ConfigError(f"invalid config at 'datasets/{name}/source': unknown source {entry['source']!r}; known: {sorted(BUILDERS)}")
        if "select_on" in (entry.get("training") or {}):
            raise ConfigError(f"invalid config at 'datasets/{name}/training/select_on': checkpoint selection is "
                              "set once, under the top-level 'training' (it decides every train job's outputs)")
    for name, v in cfg.get("variants", {}).items():
        _check_variant(cfg, name, v)
    for name, attack in cfg["evaluation"]["attacks"].items():
        _check_attack(f"evaluation/attacks/{name}", attack)
    for name, source in cfg["transfer"]["sources"].items():
        _check_method(cfg, f"transfer/sources/{name}/method", source["method"])
        _check_noise(f"transfer/sources/{name}/noise", source["noise"])
    for name, attack in cfg["transfer"]["attacks"].items():
        _check_attack(f"transfer/attacks/{name}", attack, kinds=("pgd", "cw"))
    for name, attack in cfg["calibration"]["inputs"].items():
        _check_attack(f"calibration/inputs/{name}", attack, kinds=("natural", "pgd", "cw", "square", "autoattack"))
    for name, exp in cfg["experiments"].items():
        _check_experiment(cfg, name, exp)
    seen: set[str] = set()
    for name, exp in cfg["experiments"].items():
        for i, claim in enumerate(exp.get("claims", [])):
            if claim["id"] in seen:
                raise ConfigError(f"invalid config at 'experiments/{name}/claims/{i}/id': claim id {claim['id']!r} "
                                  f"is used twice (ids name claims on the verdict page)")
            seen.add(claim["id"])


def _check_name(kind: str, where: str, name: str) -> None:
    """A name that becomes a folder (and a workflow wildcard) follows soften.pipeline.layout.NAME_PATTERNS."""
    if not layout.valid_name(kind, name):
        raise ConfigError(f"invalid config at '{where}': a {kind} name becomes a folder name; use letters, digits, "
                          f"'_' and '-' (pattern {layout.NAME_PATTERNS[kind]}), got {name!r}")


def _check_noise(where: str, noise: str) -> None:
    try:
        parse_noise_name(noise)
    except ValueError as err:
        raise ConfigError(f"invalid config at '{where}': {err}") from None


def _check_method(cfg: dict[str, Any], where: str, method: str) -> None:
    from soften.training.methods import parse_method

    if method in cfg.get("variants", {}):
        return
    try:
        parse_method(method)
    except ValueError as err:
        raise ConfigError(f"invalid config at '{where}': {err}") from None


def _check_variant(cfg: dict[str, Any], name: str, entry: dict[str, Any]) -> None:
    from soften.training.methods import method_params, parse_method

    where = f"variants/{name}"
    try:
        parse_method(name)
    except ValueError:
        pass
    else:
        raise ConfigError(f"invalid config at '{where}': a variant may not be named like a method; "
                          f"call it e.g. '{name.replace('+', '-')}-v1'")
    if not all(c.isalnum() or c in "._-" for c in name):
        raise ConfigError(f"invalid config at '{where}': a variant name is a folder name: letters, digits, '.', '_', '-'")
    try:
        parse_method(entry["method"])
        spec = parse_method(entry["method"])
        unused = set(entry.get("params") or {}) - set(spec.components)
        if unused:
            raise ValueError(f"sets {sorted(unused)}, which are not components of {entry['method']!r} {spec.components}")
        method_params(entry["method"], entry.get("params") or {})
    except ValueError as err:
        raise ConfigError(f"invalid config at '{where}': {err}") from None


def _check_attack(where: str, attack: dict[str, Any], kinds: tuple[str, ...] | None = None) -> None:
    """The attack kind exists (and is allowed here) and takes every given key."""
    kind = attack["kind"]
    allowed = kinds or tuple(sorted(KIND_PARAMS))
    if kind not in KIND_PARAMS or kind not in allowed:
        raise ConfigError(f"invalid config at '{where}/kind': unknown kind {kind!r}; known: {sorted(allowed)}")
    unknown = sorted(set(attack) - SHARED_KEYS - KIND_PARAMS[kind])
    if unknown:
        raise ConfigError(f"invalid config at '{where}': unknown keys {unknown} for kind {kind!r}; "
                          f"known: {sorted(KIND_PARAMS[kind] | SHARED_KEYS)}")
    if attack.get("version") == "torchattacks-3.3" and (kind != "autoattack" or "attacks" in attack):
        raise ConfigError(f"invalid config at '{where}/version': torchattacks-3.3 is a whole AutoAttack "
                          "(kind autoattack, no 'attacks' subset), as ADR's robust_eval.py runs it")


def selection(cfg: dict[str, Any]) -> list[str]:
    """The config's checkpoint selection rules (``training.select_on``)."""
    return list((cfg.get("training") or {}).get("select_on", TRAINING_DEFAULTS["select_on"]))


def _check_experiment(cfg: dict[str, Any], name: str, exp: dict[str, Any]) -> None:
    where = f"experiments/{name}"
    if name in RESERVED_NAMES or not layout.valid_name("experiment", name):
        raise ConfigError(f"invalid config at '{where}': an experiment name is a Snakemake target: letters, digits, "
                          f"'_' and '-', and none of {sorted(RESERVED_NAMES)}")
    for dataset in exp["datasets"]:
        if dataset not in cfg["datasets"]:
            raise ConfigError(f"invalid config at '{where}/datasets': dataset {dataset!r} has no entry under 'datasets'")
    for i, arch in enumerate(exp["archs"]):
        _check_name("arch", f"{where}/archs/{i}", arch)
    for i, noise in enumerate(exp["noise"]):
        _check_noise(f"{where}/noise/{i}", noise)
    for method in exp["methods"]:
        _check_method(cfg, f"{where}/methods", method)
        for dataset in exp["datasets"]:
            teacher_chain(cfg, dataset, method)
    if "best_test" in exp["checkpoints"] and "test" not in selection(cfg):
        raise ConfigError(f"invalid config at '{where}/checkpoints': best_test needs training.select_on: "
                          "[validation, test] (the train jobs keep best_test.pt only then)")
    kind = exp["kind"]
    if kind in ("accuracy", "transfer") and not exp.get("attacks"):
        raise ConfigError(f"invalid config at '{where}/attacks': a {kind} experiment names its attacks")
    if kind == "accuracy":
        _check_names(f"{where}/attacks", exp["attacks"], cfg["evaluation"]["attacks"], "evaluation/attacks")
    if kind == "transfer":
        _check_names(f"{where}/attacks", exp["attacks"], cfg["transfer"]["attacks"], "transfer/attacks")
        if not exp.get("sources"):
            raise ConfigError(f"invalid config at '{where}/sources': a transfer experiment names its sources")
        _check_names(f"{where}/sources", exp["sources"], cfg["transfer"]["sources"], "transfer/sources")
        targets = set(layout.experiment_runs(cfg, name))
        for dataset in exp["datasets"]:
            for source in exp["sources"]:
                run, _ = layout.transfer_source(cfg, dataset, source)
                if run in targets:
                    raise ConfigError(f"invalid config at 'transfer/sources/{source}': the source run {run.label} "
                                      f"is also a target of experiment {name!r}; a black-box source must be an independent model")
    elif exp.get("sources"):
        raise ConfigError(f"invalid config at '{where}/sources': only transfer experiments have sources")
    if kind not in ("accuracy", "transfer") and exp.get("attacks"):
        raise ConfigError(f"invalid config at '{where}/attacks': a {kind} experiment takes no attacks "
                          f"({'calibration/inputs says what it measures' if kind == 'calibration' else 'drop the key'})")
    if exp.get("published"):
        from soften.reporting.published import sources

        if exp["published"] not in sources():
            raise ConfigError(f"invalid config at '{where}/published': unknown paper table {exp['published']!r}; "
                              f"known: {sorted(sources())}")


def _check_names(where: str, names: list[str], known: dict[str, Any], section: str) -> None:
    for n in names:
        if n not in known:
            raise ConfigError(f"invalid config at '{where}': {n!r} has no entry under '{section}' (known: {sorted(known)})")


# ------------------------------------------------------------------ methods and teachers

def method_overrides(cfg: dict[str, Any], dataset: str, method: str = "") -> dict[str, dict[str, Any]]:
    """Component hyperparameters for a run: ``methods:``, then ``datasets.<dataset>.methods``,
    then the variant's own ``params`` (when ``method`` names a variant)."""
    merged = {comp: dict(params or {}) for comp, params in (cfg.get("methods") or {}).items()}
    _, variant_params = layout.variant(cfg, method)
    for layer in ((cfg["datasets"].get(dataset) or {}).get("methods") or {}, variant_params):
        for comp, params in layer.items():
            merged[comp] = {**merged.get(comp, {}), **(params or {})}
    return merged


def run_method_params(cfg: dict[str, Any], dataset: str, method: str) -> dict[str, dict[str, Any]]:
    """Every component's resolved hyperparameters for ``method`` (a method or variant name)
    on ``dataset``: defaults, then ``methods``, ``datasets.<dataset>.methods``, the variant's ``params``."""
    from soften.training.methods import method_params

    base, _ = layout.variant(cfg, method)
    try:
        return method_params(base, method_overrides(cfg, dataset, method))
    except ValueError as err:
        raise ConfigError(f"invalid config at 'methods' (dataset {dataset!r}, method {method!r}): {err}") from None


def teacher_chain(cfg: dict[str, Any], dataset: str, method: str, _path: tuple[str, ...] = ()) -> list[str]:
    """Every teacher method ``method`` depends on (transitively); a cycle is a ConfigError."""
    from soften.training.methods import parse_method, teacher_methods

    if method in _path:
        raise ConfigError(f"invalid config at 'methods': teacher cycle {' -> '.join((*_path, method))}")
    base, _ = layout.variant(cfg, method)
    try:
        parse_method(base)
    except ValueError as err:
        where = f"teacher of {_path[-1]!r}" if _path else "experiments"
        raise ConfigError(f"invalid config at 'methods' ({where}): {err}") from None
    found: list[str] = []
    for teacher in teacher_methods(base, run_method_params(cfg, dataset, method)):
        found += [teacher, *teacher_chain(cfg, dataset, teacher, (*_path, method))]
    return found


def required_runs(cfg: dict[str, Any]) -> list[layout.Run]:
    """Every run the config trains: the experiments' runs, their teachers and the transfer sources."""
    runs = layout.grid_runs(cfg) + layout.source_runs(cfg)
    out = list(runs)
    for r in runs:
        out += [layout.Run(r.dataset, r.noise, r.arch, t, r.seed) for t in teacher_chain(cfg, r.dataset, r.method)]
    return list(dict.fromkeys(out))


# ------------------------------------------------------------------ per-job specs

def resolve_run(cfg: dict[str, Any], dataset: str, noise: str, arch: str, method: str, seed: int) -> dict[str, Any]:
    """Everything one training run needs, as a JSON-serialisable dict.

    Snakemake passes it as a rule parameter, so a change to any setting that
    affects a run re-runs exactly that run. ``method`` may name a variant:
    ``method`` stays the run's name, ``base_method`` is what it trains. A
    distillation method's spec lists its teachers: runs of the same dataset,
    noise, architecture and seed whose ``best.pt`` it loads.
    """
    from soften.training.methods import teacher_methods

    if dataset not in cfg["datasets"]:
        raise ConfigError(f"dataset {dataset!r} has no entry under 'datasets'")
    entry = cfg["datasets"][dataset]
    training = {**TRAINING_DEFAULTS, **cfg.get("training", {}), **entry.get("training", {})}
    if training["select_on"] == TRAINING_DEFAULTS["select_on"]:
        # The default leaves the spec as it was before the setting existed: such runs
        # keep their resume state, their DVC stage and their recorded results.
        del training["select_on"]
    teacher_chain(cfg, dataset, method)
    base, _ = layout.variant(cfg, method)
    params = run_method_params(cfg, dataset, method)
    teachers = [
        {"method": t, "weight": float(w),
         "checkpoint": layout.checkpoint_path(cfg, layout.Run(dataset, noise, arch, t, int(seed)), "best")}
        for t, w in teacher_methods(base, params).items()
    ]
    spec = {
        "dataset": dataset,
        "noise": noise,
        "arch": arch,
        "method": method,
        "base_method": base,
        "seed": int(seed),
        "dataset_npz": layout.dataset_path(cfg, dataset),
        "noise_npz": layout.noise_path(cfg, dataset, noise),
        "device": cfg["device"],
        "threads": cfg["threads"],
        "tracking": cfg["tracking"],
        "scale": cfg["scale"],
        "training": training,
        "threat": dict(entry["threat"]),
        "augment": dict(entry["augment"]),
        "data_subset": entry.get("subset"),
        "method_params": params,
        **({"teachers": teachers} if teachers else {}),
    }
    return smoke_run(spec) if cfg["scale"] == "smoke" else spec


def attack_params(cfg: dict[str, Any], dataset: str, entry: dict[str, Any]) -> dict[str, Any]:
    """An attack entry's parameters with the dataset's eps filled in (an explicit eps wins)."""
    threat = cfg["datasets"][dataset]["threat"]
    params = {"eps": threat["eps"], **{k: v for k, v in entry.items() if k != "n_examples"}}
    return smoke_attack(params) if cfg["scale"] == "smoke" else params


def _n_examples(cfg: dict[str, Any], *candidates: int | None) -> int | None:
    n = next((c for c in candidates if c is not None), None)
    if cfg["scale"] == "smoke":
        return min(n, SMOKE["n_examples"]) if n else SMOKE["n_examples"]
    return n


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
        "n_examples": _n_examples(cfg, entry.get("n_examples"), ev["n_examples"]),
        "device": cfg["device"],
        "threads": cfg["threads"],
    }


def resolve_transfer(cfg: dict[str, Any], dataset: str, source: str, attack: str) -> dict[str, Any]:
    """Settings of one transfer set: the source and attack names, the attack's parameters
    (eps filled in), ``n_examples``, ``batch_size``."""
    tr = cfg["transfer"]
    if source not in tr["sources"]:
        raise ConfigError(f"transfer source {source!r} has no entry under 'transfer/sources'")
    if attack not in tr["attacks"]:
        raise ConfigError(f"transfer attack {attack!r} has no entry under 'transfer/attacks'")
    return {
        "source": source,
        "attack": attack,
        "params": attack_params(cfg, dataset, tr["attacks"][attack]),
        "n_examples": _n_examples(cfg, tr["attacks"][attack].get("n_examples"), tr["n_examples"]),
        "batch_size": cfg["evaluation"]["batch_size"],
        "device": cfg["device"],
        "threads": cfg["threads"],
    }


def resolve_calibration(cfg: dict[str, Any], dataset: str) -> dict[str, Any]:
    """Settings of a calibration job: the attack producing each input type, ``n_bins``, ``n_examples``,
    ``batch_size``."""
    cal = cfg["calibration"]
    return {
        "inputs": {name: attack_params(cfg, dataset, entry) for name, entry in cal["inputs"].items()},
        "n_bins": cal["n_bins"],
        "n_examples": _n_examples(cfg, cal["n_examples"]),
        "batch_size": cfg["evaluation"]["batch_size"],
        "device": cfg["device"],
        "threads": cfg["threads"],
    }


def resolve_sanity(cfg: dict[str, Any], dataset: str) -> dict[str, Any]:
    """Settings of a sanity job: the threat eps, the sweeps (``settings``; shortened at the
    smoke scale), ``n_examples``, ``batch_size``."""
    san = cfg["sanity"]
    settings = {k: v for k, v in san.items() if k != "n_examples"}
    if cfg["scale"] == "smoke":
        settings.update(SMOKE["sanity"])
    return {
        "eps": cfg["datasets"][dataset]["threat"]["eps"],
        "settings": settings,
        "n_examples": _n_examples(cfg, san["n_examples"]),
        "batch_size": cfg["evaluation"]["batch_size"],
        "device": cfg["device"],
        "threads": cfg["threads"],
    }


def fetch_entry(cfg: dict[str, Any], dataset: str) -> dict[str, Any]:
    """Only the keys of a dataset entry that shape its npz (changing a training,
    threat or method setting must not re-fetch, and so retrain, it)."""
    entry = cfg["datasets"][dataset]
    return {k: entry[k] for k in ("source", "val_size", "val_seed", "options", "subset") if k in entry}


def table_spec(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """What the tables and figures stages need to know about one experiment."""
    if name not in cfg["experiments"]:
        raise ConfigError(f"experiment {name!r} has no entry under 'experiments' (known: {sorted(cfg['experiments'])})")
    exp = cfg["experiments"][name]
    runs = layout.experiment_runs(cfg, name)
    configured = {"accuracy": cfg["evaluation"]["attacks"], "transfer": cfg["transfer"]["attacks"],
                  "calibration": cfg["calibration"]["inputs"]}.get(exp["kind"], {})
    # Claims are the verdict stage's: editing one reruns no table.
    spec = {"name": name, **copy.deepcopy({k: v for k, v in exp.items() if k != "claims"}), "scale": cfg["scale"],
            "verdicts": copy.deepcopy(cfg["verdicts"]),
            "variants": {m: layout.variant(cfg, m)[1] for m in exp["methods"] if m in cfg.get("variants", {})},
            # the attacks as configured (before the smoke scale shrinks them): what a column
            # claims to measure, matched against the paper's column
            "attack_configs": copy.deepcopy(configured)}
    if exp["kind"] in ("noise-gap", "accuracy", "transfer"):
        # history.csv inputs carry no run fields: the runs, in input order, with what
        # tables need of their specs (kept small: it travels on a command line).
        spec["runs"] = [{**r.fields(), "spec": _run_summary(resolve_run(cfg, r.dataset, r.noise, r.arch, r.method, r.seed))}
                        for r in runs]
    return spec


def verdict_spec(cfg: dict[str, Any]) -> dict[str, Any]:
    """What the verdict stage needs: the verdict settings, the scale, and per experiment (in
    the order of its inputs, one table .csv each) its title, kind, paper table and claims."""
    return {"results_dir": cfg["results_dir"], "scale": cfg["scale"], "verdicts": copy.deepcopy(cfg["verdicts"]),
            "experiments": [{"name": name, "title": exp.get("title") or name, "kind": exp["kind"],
                             "published": exp.get("published"), "seeds": exp["seeds"], "methods": exp["methods"],
                             "checkpoints": exp["checkpoints"],
                             "claims": copy.deepcopy(exp.get("claims", []))} for name, exp in cfg["experiments"].items()]}


def _run_summary(spec: dict[str, Any]) -> dict[str, Any]:
    return {"base_method": spec["base_method"], "scale": spec["scale"], "data_subset": spec["data_subset"],
            "training": {"epochs": spec["training"]["epochs"]}, "threat": {"eps": spec["threat"]["eps"]},
            "method_params": spec["method_params"]}
