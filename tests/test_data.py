import json

import numpy as np
import pytest
import torch

from soften.data import augment_batch, fetch_dataset, load_dataset_npz
from soften.data.fetch import carve_validation
from soften.io import file_digest


def test_digits_npz_format_and_sidecar(digits_npz):
    a = load_dataset_npz(digits_npz)
    assert a["x_train"].dtype == np.uint8 and a["x_train"].shape[1:] == (8, 8, 1)
    assert a["y_train"].dtype == np.int64
    assert len(a["y_train"]) + len(a["y_val"]) + len(a["y_test"]) == 1797
    assert len(a["y_val"]) == 144 and len(a["y_test"]) == 360
    assert list(a["class_names"]) == [str(i) for i in range(10)]
    assert a["x_train"].max() == 255  # 4-bit pixels scaled to the full uint8 range
    meta = json.loads(digits_npz.with_suffix(".json").read_text())
    assert meta["sha256"] == file_digest(digits_npz)
    assert meta["splits"] == {"train": 1293, "val": 144, "test": 360}
    np.testing.assert_allclose(meta["mean"], a["x_train"].reshape(-1, 1).mean(0) / 255, rtol=1e-5)


def test_fetch_is_deterministic(digits_npz, tmp_path):
    again = tmp_path / "d.npz"
    fetch_dataset("digits", {"val_size": 144, "val_seed": 0, "test_fraction": 0.2, "split_seed": 0}, again)
    a, b = load_dataset_npz(digits_npz), load_dataset_npz(again)
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_unknown_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        fetch_dataset("mnist", {}, tmp_path / "x.npz")
    assert not list(tmp_path.iterdir())


def test_validation_split_is_stratified_disjoint_and_seeded():
    y = np.repeat(np.arange(4), [100, 50, 30, 20])
    tr, va = carve_validation(y, 20, seed=0)
    assert len(va) == 20 and len(tr) == 180
    assert not set(tr) & set(va)
    assert np.bincount(y[va], minlength=4).tolist() == [10, 5, 3, 2]
    assert np.array_equal(va, carve_validation(y, 20, seed=0)[1])
    assert not np.array_equal(va, carve_validation(y, 20, seed=1)[1])


def test_augment_identity_when_off():
    x = torch.rand(5, 3, 6, 6)
    out = augment_batch(x, crop_padding=0, flip=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, x)


def test_random_crop_is_a_window_of_the_zero_padded_image():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).view(2, 1, 5, 5) + 1
    out = augment_batch(x, crop_padding=2, flip=False, generator=g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, dy:dy + 5, dx:dx + 5] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_flip_mirrors_about_half_the_batch():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(400, 1, 4, 4)
    out = augment_batch(x, crop_padding=0, flip=True, generator=g)
    flipped = (out == x.flip(3)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert bool((flipped | kept).all())
    assert 150 < int(flipped.sum()) < 250
