import numpy as np
import pytest

from soften.data.noise import inject_label_noise, noise_name, parse_noise_name


def labels(n=1000, k=10, seed=1):
    return np.random.default_rng(seed).integers(0, k, n)


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4, 0.45, 0.8])
def test_symmetric_flips_exactly_round_rate_n_to_other_classes(rate):
    y = labels(n=997)
    noisy, flipped = inject_label_noise(y, 10, "symmetric", rate, seed=3)
    assert flipped.sum() == round(rate * 997)
    assert np.array_equal(flipped, noisy != y)
    assert noisy.min() >= 0 and noisy.max() < 10
    assert noisy.dtype == np.int64


def test_symmetric_targets_are_uniform_over_other_classes():
    y = np.zeros(60000, dtype=np.int64)
    noisy, flipped = inject_label_noise(y, 4, "symmetric", 0.6, seed=0)
    counts = np.bincount(noisy[flipped], minlength=4)
    assert counts[0] == 0
    # 36000 flips over classes 1..3: 12000 each, binomial sd ~ 89.
    assert np.all(np.abs(counts[1:] - 12000) < 500)


def test_uniform_may_keep_the_label_and_flips_rate_times_k_minus_1_over_k():
    y = labels(n=50000, k=5)
    noisy, flipped = inject_label_noise(y, 5, "uniform", 0.5, seed=0)
    # P(flip) = 0.5 * 4/5 = 0.4; sd of the mean ~ 0.0022.
    assert abs(flipped.mean() - 0.4) < 0.01


def test_deterministic_in_seed_and_seed_matters():
    y = labels()
    a = inject_label_noise(y, 10, "symmetric", 0.4, seed=7)
    b = inject_label_noise(y, 10, "symmetric", 0.4, seed=7)
    c = inject_label_noise(y, 10, "symmetric", 0.4, seed=8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_none_returns_labels_unchanged():
    y = labels()
    noisy, flipped = inject_label_noise(y, 10, "none", 0.0, seed=0)
    assert np.array_equal(noisy, y) and not flipped.any()


@pytest.mark.parametrize("kind,rate,match", [
    ("symmetric", 1.0, "rate"), ("symmetric", -0.1, "rate"), ("uniform", 1.5, "rate"),
    ("pairflip", 0.2, "unknown label-noise kind"), ("none", 0.3, "rate 0"),
])
def test_bad_arguments_are_clear_errors(kind, rate, match):
    with pytest.raises(ValueError, match=match):
        inject_label_noise(labels(), 10, kind, rate, seed=0)


def test_noise_names_round_trip():
    assert noise_name("none", 0) == "none"
    assert noise_name("symmetric", 0.4) == "symmetric-0.4"
    assert parse_noise_name("uniform-0.2") == ("uniform", 0.2)
    with pytest.raises(ValueError, match="bad noise setting .* e.g. .symmetric-0.4."):
        parse_noise_name("sym0.4")


CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_asymmetric_cifar10_moves_exactly_rate_of_each_mapped_class_to_its_target():
    # Patrini et al. 2017: truck -> automobile, bird -> airplane, deer -> horse, cat <-> dog.
    y = np.repeat(np.arange(10), 100)
    noisy, flipped = inject_label_noise(y, 10, "asymmetric", 0.4, seed=0, class_names=CIFAR10)
    expected = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
    for c in range(10):
        moved = noisy[(y == c) & flipped]
        if c in expected:
            assert len(moved) == 40 and set(moved) == {expected[c]}
        else:
            assert len(moved) == 0
    assert flipped.sum() == 200 and parse_noise_name("asymmetric-0.4") == ("asymmetric", 0.4)


def test_asymmetric_cifar100_moves_to_the_next_class_of_the_superclass():
    # Independent reference: CIFAR-100's fine -> coarse label table as widely copied
    # (e.g. ryanchankh/cifar100coarse sparse2coarse.py), and the fine label names in label order.
    coarse = [4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15, 3, 15,
              0, 11, 1, 10, 12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
              10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13, 16, 19, 2, 4, 6, 19, 5, 5, 8, 19,
              18, 1, 2, 15, 6, 0, 17, 8, 14, 13]
    from soften.data.noise import CIFAR100_SUPERCLASSES, asymmetric_map

    names = sorted(n for group in CIFAR100_SUPERCLASSES.values() for n in group)   # fine labels are alphabetical
    target = asymmetric_map(names)
    for c in range(100):
        members = [f for f in range(100) if coarse[f] == coarse[c]]
        assert target[c] == members[(members.index(c) + 1) % len(members)]


def test_asymmetric_noise_refuses_datasets_without_a_map():
    with pytest.raises(ValueError, match="CIFAR-10 and CIFAR-100"):
        inject_label_noise(np.arange(10), 10, "asymmetric", 0.2, seed=0, class_names=[str(i) for i in range(10)])
