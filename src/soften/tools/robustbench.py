"""Export a trained run as a RobustBench claim: a model card and a checkpoint that loads
without soften.

RobustBench (Croce et al., NeurIPS Datasets & Benchmarks 2021) lists a model with a
``model_info/<dataset>/<threat_model>/<name>.json`` card (link, name, authors,
additional_data, number_forward_passes, dataset, venue, architecture, eps, clean_acc,
reported, autoattack_acc, footnote, unreliable) and loads its weights as a
``state_dict`` into an architecture class that takes [0, 1] images. The export writes,
into one directory:

- ``<name>.json``: the card, filled from the run's spec and its evaluation JSONs; what
  differs from a RobustBench evaluation (AutoAttack on a subset, a non-standard
  AutoAttack, a dataset or an architecture RobustBench does not have) is said in the
  footnote;
- ``<name>.pt``: the model's ``state_dict`` (plain tensors: ``torch.load(...,
  weights_only=True)``), normalisation buffers included;
- ``model.py``: a self-contained module (torch only) with the architecture's source,
  copied from soften's own model modules, and ``load_model()``, which returns a plain
  ``nn.Module`` in eval mode taking [0, 1] NCHW images;
- ``provenance.json``: the run, checkpoint, evaluation files and hashes the card comes
  from.

Before returning, the export loads ``model.py`` by path and checks that it gives the
checkpoint's logits.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import math
import re
from pathlib import Path
from typing import Any

import torch

import soften
from soften.pipeline import layout
from soften.reporting import published as pubs
from soften.io import file_digest, save_json, save_text, save_torch
from soften.models import ARCHS
from soften.models import normalize as normalize_module
from soften.models.checkpoint import load_model

#: soften architecture -> the name RobustBench's model zoo uses for the same network.
ROBUSTBENCH_ARCHS = {"resnet18": "ResNet-18", "resnet34": "ResNet-34", "resnet50": "ResNet-50",
                     "preactresnet18": "PreActResNet-18", "wrn34-10": "WideResNet-34-10"}
ROBUSTBENCH_DATASETS = ("cifar10", "cifar100", "imagenet")
#: RobustBench evaluates on this many test images per dataset.
ROBUSTBENCH_N_TEST = {"cifar10": 10000, "cifar100": 10000, "imagenet": 5000}
#: The paper a run's method comes from, by label refiner (the card's link/name/authors/venue).
PAPERS = {
    "sglr": {"link": "https://arxiv.org/abs/2403.09101",
             "name": "Soften to Defend: Towards Adversarial Robustness via Self-Guided Label Refinement",
             "authors": "Daiwei Yu, Zhuorong Li, Lina Wei, Canghong Jin, Yun Zhang, Sixian Chan",
             "venue": "CVPR 2024"},
    "adr": {"link": "https://arxiv.org/abs/2305.12118",
            "name": "Annealing Self-Distillation Rectification Improves Adversarial Training",
            "authors": "Yu-Yu Wu, Hung-Jui Wang, Shang-Tse Chen",
            "venue": "arXiv, May 2023"},
}
PAPERS["sgls"] = PAPERS["sglr"]
#: Imports the standalone model.py may carry (it must not need soften).
_STANDALONE_IMPORTS = {"__future__", "typing", "math", "torch"}


def _pct(accuracy: float) -> str:
    return f"{100 * accuracy:.2f}"


def eps_text(eps: float) -> str:
    """8/255 as RobustBench writes it; other radii as decimals."""
    k = eps * 255
    return f"{round(k)}/255" if math.isclose(k, round(k), abs_tol=1e-6) and round(k) > 0 else f"{eps:g}"


def default_name(ckpt_info: dict[str, Any], checkpoint: str) -> str:
    s = ckpt_info["spec"]
    return re.sub(r"[^A-Za-z0-9_-]+", "_", f"soften_{s['dataset']}_{s['noise']}_{s['arch']}_{s['method']}_seed{s['seed']}_{checkpoint}")


def _evaluations(run_dir: Path, checkpoint: str, epoch: int) -> dict[str, dict[str, Any]]:
    """The checkpoint's evaluations by attack kind: natural, and AutoAttack (the standard
    version on the most images when there are several)."""
    found: dict[str, dict[str, Any]] = {}
    for path in layout.evaluations_in(run_dir, checkpoint):
        rec = json.loads(path.read_text())
        if rec.get("record") != "evaluation":
            continue
        if rec.get("checkpoint_epoch") != epoch:
            raise ValueError(f"{path} evaluated epoch {rec.get('checkpoint_epoch')} but {checkpoint}.pt holds epoch "
                             f"{epoch}: re-run the evaluation before exporting")
        rec["file"] = str(path)
        kind = rec["params"]["kind"]
        if kind == "autoattack":
            rank = (_aa_standard(rec) is None, rec["n"])
            if "autoattack" in found and rank <= (_aa_standard(found["autoattack"]) is None, found["autoattack"]["n"]):
                continue
        elif kind == "natural" and "natural" in found and rec["n"] <= found["natural"]["n"]:
            continue
        elif kind not in ("natural", "autoattack"):
            continue
        found[kind] = rec
    if "natural" not in found:
        raise ValueError(f"{run_dir / 'eval'} has no natural-accuracy evaluation of {checkpoint}.pt: "
                         f"run the evaluate stage first")
    return found


def _aa_standard(rec: dict[str, Any]) -> str | None:
    """Why an AutoAttack record is not the standard evaluation, or None."""
    p, d = rec["params"], rec.get("details", {})
    why = []
    if p.get("version", "standard") != "standard":
        why.append(f"version {p['version']}")
    if p.get("attacks"):
        why.append("attacks " + ", ".join(p["attacks"]))
    if d.get("settings") or p.get("settings"):
        why.append("settings " + json.dumps(d.get("settings") or p.get("settings"), sort_keys=True))
    return "; ".join(why) or None


def _reported(spec: dict[str, Any], checkpoint: str) -> str:
    """The AutoAttack accuracy the paper reports for this run's setting (a paper_numbers.yaml cell), or ''."""
    row = {k: spec[k] for k in ("dataset", "noise", "arch", "method")}
    row |= {"base_method": spec.get("base_method", spec["method"]), "method_params": spec.get("method_params", {})}
    part = {"best": "Best", "final": "Final"}[checkpoint]
    for table in pubs.sources().values():
        eps = table.get("setting", {}).get("eps")
        if eps is not None and not math.isclose(eps, spec["threat"]["eps"], abs_tol=1e-6):
            continue
        pub_row = pubs.match_row(table, row)
        column = pubs.match_column(table, {"kind": "autoattack", "version": "standard"},
                                   checkpoint if table["parts"] == ["value"] else None)
        if pub_row is not None and column is not None:
            cell = pubs.published_cell(table, pub_row, column, part if part in table["parts"] else "value")
            if cell is not None:
                return f"{cell.value:.2f}"
    return ""


def card(ckpt_info: dict[str, Any], evals: dict[str, dict[str, Any]], checkpoint: str,
         paper: dict[str, str] | None = None) -> dict[str, Any]:
    """The RobustBench model_info fields for one checkpoint, and the footnote saying where it differs."""
    spec = ckpt_info["spec"]
    dataset, arch = spec["dataset"], spec["arch"]
    natural, aa = evals["natural"], evals.get("autoattack")
    refiner = next((c for c in spec.get("base_method", spec["method"]).split("+") if c in PAPERS), None)
    info = dict(PAPERS.get(refiner, {"link": "", "name": "", "authors": "", "venue": ""}))
    info |= {k: v for k, v in (paper or {}).items() if v}
    notes = [f"soften {soften.__version__} run {dataset}/{spec['noise']}/{arch}/{spec['method']}/seed{spec['seed']}, "
             f"{checkpoint} checkpoint (epoch {ckpt_info['epoch']} of {spec['training']['epochs']}"
             + (", chosen on validation robust accuracy)." if checkpoint == "best" else ").")]
    if spec["noise"] != "none":
        notes.append(f"Trained with {spec['noise']} label noise.")
    if not info["link"]:
        notes.append(f"Method {spec['method']}: fill in link, name, authors and venue.")
    n_test = ROBUSTBENCH_N_TEST.get(dataset)
    if aa is None:
        notes.append("No AutoAttack evaluation of this checkpoint: autoattack_acc is empty.")
    else:
        if aa["n"] < natural["n"] or (n_test and aa["n"] < n_test):
            notes.append(f"AutoAttack on the first {aa['n']} test images only"
                         + (f" (RobustBench uses {n_test})" if n_test else "")
                         + f"; clean accuracy on {natural['n']}.")
        why = _aa_standard(aa)
        if why:
            notes.append(f"Non-standard AutoAttack ({why}).")
    if n_test and natural["n"] < n_test:
        notes.append(f"Clean accuracy on {natural['n']} of RobustBench's {n_test} test images.")
    if dataset not in ROBUSTBENCH_DATASETS:
        notes.append(f"Dataset '{dataset}' is not a RobustBench dataset ({', '.join(ROBUSTBENCH_DATASETS)}).")
    if arch in ROBUSTBENCH_ARCHS:
        notes.append(f"Weights load into the bundled model.py (soften's {arch}, normalisation inside), "
                     f"not into RobustBench's {ROBUSTBENCH_ARCHS[arch]} class.")
    else:
        notes.append(f"Architecture '{arch}' is not one RobustBench knows; model.py defines it.")
    params = (aa or natural)["params"]
    return {
        "link": info["link"], "name": info["name"], "authors": info["authors"],
        "additional_data": False,          # soften trains on the dataset's own training split only
        "number_forward_passes": 1,        # a deterministic single forward pass
        "dataset": dataset, "venue": info["venue"],
        "architecture": ROBUSTBENCH_ARCHS.get(arch, f"{arch} (soften)"),
        "eps": eps_text(float(params.get("eps", spec["threat"]["eps"]))),
        "clean_acc": _pct(natural["accuracy"]),
        "reported": _reported(spec, checkpoint),
        "autoattack_acc": _pct(aa["accuracy"]) if aa else "",
        "footnote": " ".join(notes),
        "unreliable": False,
    }


def _module_source(module) -> str:
    """A soften model module's source, checked to need nothing but torch."""
    source = inspect.getsource(module)
    for node in ast.walk(ast.parse(source)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        for name in names:
            if name.split(".")[0] not in _STANDALONE_IMPORTS:
                raise ValueError(f"{module.__name__} imports {name}: it cannot go into a standalone model.py")
    return "\n".join(line for line in source.splitlines() if line != "from __future__ import annotations")


def loader_source(name: str, model_args: dict[str, Any]) -> str:
    arch = model_args["arch"]
    ctor = ARCHS[arch]
    arch_module = inspect.getmodule(ctor)
    known = f" (RobustBench's {ROBUSTBENCH_ARCHS[arch]})" if arch in ROBUSTBENCH_ARCHS else " (not a RobustBench architecture)"
    header = f'''"""{name}: a soften model, loadable without soften (torch only).

    import importlib.util
    spec = importlib.util.spec_from_file_location("{name.replace('-', '_')}", "path/to/model.py")
    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
    model = module.load_model()      # nn.Module in eval mode; [0, 1] NCHW images in, logits out

soften architecture {arch}{known}, {model_args["num_classes"]} classes,
{model_args["in_channels"]}-channel input. Normalisation is inside the model: its mean and std
are buffers in the state_dict. The classes below are soften {soften.__version__}'s own
source ({normalize_module.__name__}, {arch_module.__name__}).
"""

from __future__ import annotations

from pathlib import Path
'''
    # only smoke-scale checkpoints have a width_factor (soften.pipeline.config.SMOKE)
    width = f", width_factor={model_args['width_factor']!r}" if "width_factor" in model_args else ""
    footer = f'''


STATE_DICT = Path(__file__).with_name("{name}.pt")


def build_model() -> nn.Module:
    """The architecture, untrained; :func:`load_model` fills in the weights."""
    channels = {model_args["in_channels"]}
    net = {ctor.__name__}(num_classes={model_args["num_classes"]}, in_channels=channels{width})
    return Normalized(net, [0.0] * channels, [1.0] * channels)


def load_model(path: str | Path = STATE_DICT, device: str = "cpu") -> nn.Module:
    """The exported model in eval mode (its normalisation buffers come from the state_dict)."""
    model = build_model()
    model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    return model.to(device).eval()
'''
    return header + _module_source(normalize_module) + "\n\n" + _module_source(arch_module) + footer


def import_loader(path: str | Path):
    """Import an exported model.py by path (as a user would, without soften)."""
    spec = importlib.util.spec_from_file_location(f"soften_export_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def export(run_dir: str | Path, out_dir: str | Path, *, checkpoint: str = "best", name: str | None = None,
           paper: dict[str, str] | None = None) -> dict[str, Any]:
    """Write the card, state_dict, model.py and provenance of ``run_dir``'s ``checkpoint`` into ``out_dir``."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    ckpt_path = layout.checkpoint_in(run_dir, checkpoint)
    if not ckpt_path.exists():
        raise ValueError(f"{ckpt_path} does not exist: give a run directory (results/<dataset>/<noise>/<arch>/"
                         f"<method>/seed<k>) whose training finished")
    model, ckpt_info = load_model(ckpt_path)
    evals = _evaluations(run_dir, checkpoint, ckpt_info["epoch"])
    name = name or default_name(ckpt_info, checkpoint)
    info = card(ckpt_info, evals, checkpoint, paper)

    weights = out_dir / f"{name}.pt"
    save_torch({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, weights)
    save_text(loader_source(name, ckpt_info["model_args"]), out_dir / "model.py")
    save_text(json.dumps(info, indent=2) + "\n", out_dir / f"{name}.json")  # RobustBench's field order

    # The bundled loader must give the checkpoint's logits, or the export is wrong.
    exported = import_loader(out_dir / "model.py").load_model(weights)
    channels = ckpt_info["model_args"]["in_channels"]
    probe = torch.rand(4, channels, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if not torch.equal(exported(probe), model(probe)):
            raise RuntimeError(f"{out_dir / 'model.py'} does not reproduce {ckpt_path}'s outputs")

    provenance = {
        "soften": soften.__version__, "run": {k: ckpt_info["spec"][k] for k in ("dataset", "noise", "arch", "method", "seed")},
        "checkpoint": str(ckpt_path), "checkpoint_epoch": ckpt_info["epoch"], "checkpoint_sha256": file_digest(ckpt_path),
        "state_dict_sha256": file_digest(weights),
        "threat_model": (evals.get("autoattack") or evals["natural"])["params"].get("norm", "Linf"),
        "evaluations": {kind: {"file": r["file"], "attack": r["attack"], "n": r["n"], "correct": r["correct"],
                               "params": r["params"]} for kind, r in evals.items()},
    }
    save_json(provenance, out_dir / "provenance.json")
    return {"card": str(out_dir / f"{name}.json"), "state_dict": str(weights), "loader": str(out_dir / "model.py"),
            "autoattack_acc": info["autoattack_acc"], "clean_acc": info["clean_acc"]}
