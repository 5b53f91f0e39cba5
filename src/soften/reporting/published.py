"""The papers' published numbers, and whether a reproduced cell is comparable with one.

``soften/reporting/reference/paper_numbers.yaml`` holds one entry per paper table (its
header documents the format). A reproduced table cell is paired with a published
one when the row (dataset, architecture, noise, method and the hyperparameters the
row varies) and the column (what was measured: attack kind and steps, AutoAttack
version, transfer source, calibration input or noise setting) match. It is then
*comparable* only if the whole setting matches too: the run's epochs and eps, its
training precision (the papers train in fp32; a bf16 or fp16 run is not comparable),
the number of test images, and the attack's budget, and the *protocol*: a table's
``protocol`` block records how the authors' code measured it (which checkpoint
is "Best", which AutoAttack implementation, which PGD step), and a cell measured
another way (soften's validation-selected Best beside a paper whose code chose
on the test set, say) is not comparable either. Otherwise the table prints the
paper's value with the reasons it is not comparable, and no difference.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
from dataclasses import dataclass
from typing import Any

import yaml

TOLERANCE_EPS = 1e-6
#: The checkpoint selection rule behind each selected checkpoint (``training.select_on``).
SELECTION = {"best": "validation", "best_test": "test"}
#: Which published checkpoint a reproduced one stands for: both selections are a "Best".
ROLE = {"best": "best", "best_test": "best", "final": "final"}
#: AutoAttack implementations that are the "standard" version the papers name.
AA_STANDARD = {"standard": "standard", "torchattacks-3.3": "standard"}


@functools.lru_cache(maxsize=1)
def _load() -> dict[str, Any]:
    text = importlib.resources.files("soften").joinpath("reporting/reference/paper_numbers.yaml").read_text()
    return yaml.safe_load(text)["tables"]


def sources() -> dict[str, Any]:
    """Paper table key -> its entry."""
    return _load()


@dataclass(frozen=True)
class Published:
    """One published number: as printed, its value, and its ± std if printed (same units as the table)."""

    text: str           # as printed, e.g. "52.60 ± 0.182"
    value: float
    std: float | None = None


def parse_value(text: str) -> Published:
    """A printed paper value (``"52.60 ± 0.18"`` or ``"52.6"``) -> its number and std."""
    value, _, std = str(text).partition("±")
    return Published(str(text).strip(), float(value), float(std) if std.strip() else None)


def digits(text: str, part: int = 0) -> int:
    """Decimal places of a printed value ("50.1" -> 1); ``part=1``: of its "± std"."""
    pieces = str(text).split("±")
    number = pieces[part].strip() if part < len(pieces) else pieces[0].strip()
    return len(number.split(".")[1]) if "." in number else 0


# ------------------------------------------------------------------ matching

def _params_match(wanted: dict[str, dict[str, Any]], have: dict[str, dict[str, Any]]) -> bool:
    return all(comp in have and all(_same(have[comp].get(k), v) for k, v in params.items())
               for comp, params in wanted.items())


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), abs_tol=TOLERANCE_EPS)
    return a == b


def match_row(table: dict[str, Any], row: dict[str, Any]) -> dict[str, Any] | None:
    """The published row for one of our rows: ``row`` has dataset, noise, arch, method
    (the run's name), base_method and method_params (resolved)."""
    for pub in table["rows"]:
        if pub["dataset"] != row["dataset"] or pub["arch"] != row["arch"]:
            continue
        if "noise" in pub and pub["noise"] != row["noise"]:
            continue
        if pub.get("params"):
            if pub["method"] == row["base_method"] and _params_match(pub["params"], row["method_params"]):
                return pub
        elif pub["method"] == row["method"]:
            return pub
    return None


def match_column(table: dict[str, Any], measure: dict[str, Any], checkpoint: str | None = None) -> str | None:
    """The published column measuring what ``measure`` describes.

    ``measure``: ``kind`` and attack params (steps, version), ``source`` (transfer:
    the source run's arch and method) or ``noise`` (noise-gap)."""
    for name, col in table["columns"].items():
        if "noise" in col:
            if measure.get("noise") == col["noise"]:
                return name
            continue
        if col.get("kind") != measure.get("kind"):
            continue
        if "steps" in col and int(measure.get("steps", -1)) != int(col["steps"]):
            continue
        version = measure.get("version", "standard")
        if "version" in col and AA_STANDARD.get(version, version) != col["version"]:
            continue
        if "source" in col and not all(measure.get("source", {}).get(k) == v for k, v in col["source"].items()):
            continue
        if checkpoint is not None and col.get("checkpoint", ROLE.get(checkpoint, checkpoint)) != ROLE.get(checkpoint, checkpoint):
            continue
        return name
    return None


def published_cell(table: dict[str, Any], pub_row: dict[str, Any], column: str, part: str) -> Published | None:
    """The published value of one cell: ``part`` is Best, Final, Diff, or 'value'
    (``Best(test)``/``Diff(test)``, soften's test-selected ones, stand for Best/Diff)."""
    values = pub_row.get(column)
    if values is None:
        return None
    parts = table["parts"]
    part = part.removesuffix("(test)")
    if part in parts:
        return parse_value(values[parts.index(part)])
    if parts == ["value"]:
        return parse_value(values[0])
    return None


def printed_cell(table: dict[str, Any], pub_row: dict[str, Any], column: str, part: str) -> str | None:
    """What the paper prints in this cell where it contradicts itself (the row's ``printed``), else None."""
    printed = (pub_row.get("printed") or {}).get(column)
    if printed is None:
        return None
    parts = table["parts"]
    part = part.removesuffix("(test)")  # as published_cell
    index = parts.index(part) if part in parts else 0 if parts == ["value"] else None
    if index is None or str(printed[index]).strip() == str(pub_row[column][index]).strip():
        return None
    return str(printed[index]).strip()


def expected_epochs(table: dict[str, Any], dataset: str) -> int | None:
    """The epochs the paper table trained for on ``dataset`` (None when it does not say)."""
    epochs = table["setting"].get("epochs")
    return epochs.get(dataset) if isinstance(epochs, dict) else epochs


#: The precision every paper table was trained in: the official code of SGLR (devicerxx/SGLS),
#: ADR (yuyuwu5/ADR) and the baselines they run (Rice et al., TRADES, AWP) uses no autocast.
PAPER_PRECISION = "fp32"


def trained_precision(run_spec: dict[str, Any]) -> str | None:
    """The precision a run trained in: as recorded by training (``precision``, ``amp: auto``
    resolved by device), else as its ``training.amp`` fixes it; None when neither says."""
    if run_spec.get("precision"):
        return str(run_spec["precision"])
    amp = run_spec.get("training", {}).get("amp")
    return {"off": "fp32", False: "fp32", "bf16": "bf16", "fp16": "fp16"}.get(amp)


def not_comparable(table: dict[str, Any], *, dataset: str, run_spec: dict[str, Any] | None, n: int | None,
                   params: dict[str, Any] | None = None, configured: dict[str, Any] | None = None,
                   checkpoint: str | None = None) -> list[str]:
    """Why a reproduced cell is not comparable with the paper's (empty: it is).

    ``run_spec``: the run's resolved spec (epochs, threat, scale, the recorded
    ``precision``); ``n``: test
    images the cell was measured on; ``params``: the attack as it ran;
    ``configured``: the attack as the config names it (the smoke scale cuts steps);
    ``checkpoint``: best, best_test or final (its selection rule against the
    table's ``protocol``)."""
    why = protocol_mismatches(table, params=params, checkpoint=checkpoint)
    setting = table["setting"]
    if run_spec is not None:
        if run_spec.get("scale", "full") != "full":
            why.append(f"{run_spec['scale']} scale")
        epochs = expected_epochs(table, dataset)
        got = run_spec.get("training", {}).get("epochs")
        if epochs is not None and got is not None and got != epochs:
            why.append(f"{got} epochs, paper {epochs}")
        eps = setting.get("eps")
        if eps is not None and not math.isclose(run_spec.get("threat", {}).get("eps", eps), eps, abs_tol=TOLERANCE_EPS):
            why.append(f"training eps {run_spec['threat']['eps']:.4g}, paper {eps:.4g}")
        if run_spec.get("data_subset"):
            why.append("training subset")
        trained = trained_precision(run_spec)
        if trained is None and run_spec.get("training", {}).get("amp") == "auto":
            why.append("training precision not recorded (amp: auto)")
        elif trained is not None and trained != PAPER_PRECISION:
            why.append(f"trained in {trained}, paper {PAPER_PRECISION}")
    if n is not None and setting.get("n_test") and n < setting["n_test"]:
        why.append(f"{n} of {setting['n_test']} test images")
    if params:
        eps = setting.get("eps")
        protocol_eps = (protocol(table).get("pgd") or {}).get("eps") if params.get("kind") == "pgd" else None
        if eps is not None and "eps" in params and not any(
                math.isclose(params["eps"], e, abs_tol=TOLERANCE_EPS) for e in (eps, protocol_eps) if e is not None):
            why.append(f"attack eps {params['eps']:.4g}")
        if configured and "steps" in params and int(params["steps"]) != int(configured.get("steps", params["steps"])):
            why.append(f"{params['steps']} of {configured['steps']} attack steps")
        if params.get("settings"):
            why.append("reduced budget (" + ", ".join(f"{k}={v}" for k, v in params["settings"].items()) + ")")
        if params.get("kind") == "autoattack" and params.get("attacks"):
            why.append("AutoAttack subset " + "+".join(params["attacks"]))
    return why


# ------------------------------------------------------------------ protocols

def protocol(table: dict[str, Any]) -> dict[str, Any]:
    """How the authors' code measured a table (``protocol`` in paper_numbers.yaml): ``selection``
    (validation or test), ``autoattack`` (standard or torchattacks-3.3), ``pgd`` ({eps, alpha}
    of the evaluation PGD, where the code's differ from the paper's text); absent keys: as
    the paper states (soften's defaults)."""
    return table.get("protocol") or {}


def _pgd_text(eps: float, alpha: float | None) -> str:
    step = f", step {alpha:.4g}" if alpha is not None else ""
    return f"eps {eps:.4g}{step}"


def protocol_mismatches(table: dict[str, Any], *, params: dict[str, Any] | None,
                        checkpoint: str | None) -> list[str]:
    """The ways a cell's measurement differs from the authors' code's (``protocol``)."""
    proto, why = protocol(table), []
    selection = SELECTION.get(checkpoint or "")
    wanted = proto.get("selection")
    if wanted and selection and selection != wanted:
        why.append(f"Best chosen on the {selection} set (the authors' code: on the {wanted} set)")
    params = params or {}
    if params.get("kind") == "autoattack" and proto.get("autoattack"):
        version = params.get("version", "standard")
        if version != proto["autoattack"]:
            why.append(f"AutoAttack {version} (the authors' code: {proto['autoattack']})")
    pgd = proto.get("pgd")
    if params.get("kind") == "pgd" and pgd and "eps" in params:
        alpha = params.get("alpha", params["eps"] / 4)
        same = math.isclose(params["eps"], pgd["eps"], abs_tol=TOLERANCE_EPS) and (
            "alpha" not in pgd or math.isclose(alpha, pgd["alpha"], abs_tol=TOLERANCE_EPS))
        if not same:
            why.append(f"PGD {_pgd_text(params['eps'], alpha)} (the authors' script: {_pgd_text(pgd['eps'], pgd.get('alpha'))})")
    return why
