"""Label-noise injection on training labels.

A noise setting is named ``none`` or ``KIND-RATE`` (``symmetric-0.4``); the
grammar is :data:`NOISE_REGEX`, used by config validation and the workflow's
wildcard alike. Three noise models from the noisy-label literature:

- ``symmetric``: exactly ``round(rate * n)`` labels, chosen uniformly without
  replacement, each moved to a uniformly chosen *different* class. The realised
  noise rate is therefore exactly ``rate`` (up to rounding).
- ``uniform``: each label is resampled from all ``num_classes`` classes with
  probability ``rate``; it may land on its own class, so the realised flip rate
  is about ``rate * (K - 1) / K``.
- ``asymmetric`` (class-dependent; Patrini et al. 2017, "Making deep neural
  networks robust to label noise: a loss correction approach"): in every class
  that the dataset's map moves, exactly ``round(rate * n_c)`` labels (chosen
  uniformly) move to the mapped class. CIFAR-10: truck -> automobile,
  bird -> airplane, deer -> horse, cat <-> dog (other classes untouched).
  CIFAR-100: each class -> the next class of its superclass (in label order,
  cyclically). The map is chosen by the dataset's class names, so it works for
  any copy of CIFAR (cifar10-mini included) and refuses other datasets.
"""

from __future__ import annotations

import re

import numpy as np

NOISE_KINDS = ("none", "symmetric", "uniform", "asymmetric")
#: The one definition of a noise setting's name.
NOISE_REGEX = r"none|(?:symmetric|uniform|asymmetric)-(?:0(?:\.[0-9]+)?|1(?:\.0+)?)"

#: Patrini et al.'s CIFAR-10 map, by class name.
CIFAR10_ASYMMETRIC = {"truck": "automobile", "bird": "airplane", "deer": "horse", "cat": "dog", "dog": "cat"}

#: The 20 CIFAR-100 superclasses and their 5 classes (Krizhevsky 2009, the dataset's
#: web page), each list in label (alphabetical) order.
CIFAR100_SUPERCLASSES = {
    "aquatic mammals": ["beaver", "dolphin", "otter", "seal", "whale"],
    "fish": ["aquarium_fish", "flatfish", "ray", "shark", "trout"],
    "flowers": ["orchid", "poppy", "rose", "sunflower", "tulip"],
    "food containers": ["bottle", "bowl", "can", "cup", "plate"],
    "fruit and vegetables": ["apple", "mushroom", "orange", "pear", "sweet_pepper"],
    "household electrical devices": ["clock", "keyboard", "lamp", "telephone", "television"],
    "household furniture": ["bed", "chair", "couch", "table", "wardrobe"],
    "insects": ["bee", "beetle", "butterfly", "caterpillar", "cockroach"],
    "large carnivores": ["bear", "leopard", "lion", "tiger", "wolf"],
    "large man-made outdoor things": ["bridge", "castle", "house", "road", "skyscraper"],
    "large natural outdoor scenes": ["cloud", "forest", "mountain", "plain", "sea"],
    "large omnivores and herbivores": ["camel", "cattle", "chimpanzee", "elephant", "kangaroo"],
    "medium-sized mammals": ["fox", "porcupine", "possum", "raccoon", "skunk"],
    "non-insect invertebrates": ["crab", "lobster", "snail", "spider", "worm"],
    "people": ["baby", "boy", "girl", "man", "woman"],
    "reptiles": ["crocodile", "dinosaur", "lizard", "snake", "turtle"],
    "small mammals": ["hamster", "mouse", "rabbit", "shrew", "squirrel"],
    "trees": ["maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"],
    "vehicles 1": ["bicycle", "bus", "motorcycle", "pickup_truck", "train"],
    "vehicles 2": ["lawn_mower", "rocket", "streetcar", "tank", "tractor"],
}


def asymmetric_map(class_names: list[str]) -> np.ndarray:
    """``target[c]``: the class that class ``c``'s labels move to (``c`` itself when untouched)."""
    names = [str(n) for n in class_names]
    index = {n: i for i, n in enumerate(names)}
    target = np.arange(len(names))
    if len(names) == 10 and set(CIFAR10_ASYMMETRIC) <= set(names):
        for src, dst in CIFAR10_ASYMMETRIC.items():
            target[index[src]] = index[dst]
        return target
    fine = [n for group in CIFAR100_SUPERCLASSES.values() for n in group]
    if len(names) == 100 and set(names) == set(fine):
        for group in CIFAR100_SUPERCLASSES.values():
            ordered = sorted(group, key=index.__getitem__)
            for a, b in zip(ordered, ordered[1:] + ordered[:1]):
                target[index[a]] = index[b]
        return target
    raise ValueError("asymmetric label noise is defined for CIFAR-10 and CIFAR-100 class names only; "
                     f"this dataset's classes are {names[:5]}{'...' if len(names) > 5 else ''}")


def inject_label_noise(
    labels: np.ndarray, num_classes: int, kind: str, rate: float, seed: int, class_names: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(noisy_labels, flipped_mask)``; deterministic in ``seed``.

    ``class_names`` is needed for ``asymmetric`` noise (it picks the class map).
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown label-noise kind {kind!r}; expected one of {NOISE_KINDS}")
    if not (0.0 <= float(rate) < 1.0):
        raise ValueError(f"label-noise rate must be in [0, 1), got {rate!r}")
    if kind == "none" and rate != 0:
        raise ValueError(f"label-noise kind 'none' needs rate 0, got {rate!r}")
    if num_classes < 2:
        raise ValueError(f"label noise needs at least 2 classes, got {num_classes}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")

    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    n = labels.size
    if kind == "symmetric":
        idx = rng.choice(n, size=int(round(rate * n)), replace=False)
        # An offset in 1..K-1 added modulo K is uniform over the other classes.
        offset = rng.integers(1, num_classes, size=idx.size)
        noisy[idx] = (labels[idx] + offset) % num_classes
    elif kind == "uniform":
        resample = rng.random(n) < rate
        noisy[resample] = rng.integers(0, num_classes, size=int(resample.sum()))
    elif kind == "asymmetric":
        if class_names is None or len(class_names) != num_classes:
            raise ValueError("asymmetric label noise needs the dataset's class names")
        target = asymmetric_map(list(class_names))
        for c in range(num_classes):
            if target[c] == c:
                continue
            members = np.flatnonzero(labels == c)
            idx = rng.choice(members, size=int(round(rate * members.size)), replace=False)
            noisy[idx] = target[c]
    return noisy, noisy != labels


def noise_name(kind: str, rate: float) -> str:
    """The path component for a noise setting: ``none`` or e.g. ``symmetric-0.4``."""
    return "none" if kind == "none" else f"{kind}-{float(rate):g}"


def parse_noise_name(name: str) -> tuple[str, float]:
    """``'symmetric-0.4'`` -> ``('symmetric', 0.4)``; a plain-language error otherwise."""
    if not re.fullmatch(NOISE_REGEX, str(name)):
        raise ValueError(f"bad noise setting {name!r}: write 'none' or KIND-RATE with KIND one of "
                         f"{', '.join(NOISE_KINDS[1:])} and RATE a fraction below 1, e.g. 'symmetric-0.4'")
    if name == "none":
        return "none", 0.0
    kind, _, rate = name.partition("-")
    if float(rate) >= 1:
        raise ValueError(f"bad noise setting {name!r}: the rate must be below 1")
    return kind, float(rate)
