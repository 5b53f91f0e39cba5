"""SVHN and TinyImageNet readers on tiny files in the official layouts."""

from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np
import pytest

from soften.data.download import ChecksumError
from soften.data.sources import BUILDERS


def test_svhn_mat_files_label_10_is_zero(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, 32, 3, 7), dtype=np.uint8)  # official layout: H, W, C, N
    y = np.array([[10], [1], [2], [3], [4], [5], [10]], dtype=np.uint8)
    scipy_io.savemat(tmp_path / "train_32x32.mat", {"X": x, "y": y})
    scipy_io.savemat(tmp_path / "test_32x32.mat", {"X": x[..., :3], "y": y[:3]})
    md5 = {s: hashlib.md5((tmp_path / f"{s}_32x32.mat").read_bytes()).hexdigest() for s in ("train", "test")}
    raw = BUILDERS["svhn"]({"path": str(tmp_path), "md5": md5})
    assert raw.y_train.tolist() == [0, 1, 2, 3, 4, 5, 0]
    np.testing.assert_array_equal(raw.x_train[2], x[:, :, :, 2])
    assert raw.x_test.shape == (3, 32, 32, 3)
    with pytest.raises(ChecksumError, match="train_32x32.mat"):
        BUILDERS["svhn"]({"path": str(tmp_path), "md5": {"train": "0" * 32, "test": md5["test"]}})


def _jpeg(color, mode="RGB") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (64, 64), color).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_tinyimagenet_zip_regroups_validation_by_annotations(tmp_path):
    wnids = ["n002", "n001"]  # label order is wnids.txt order, not sorted
    path = tmp_path / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(path, "w") as zf:
        root = "tiny-imagenet-200/"
        zf.writestr(root + "wnids.txt", "\n".join(wnids) + "\n")
        zf.writestr(root + "words.txt", "n001\tgoldfish, Carassius auratus\nn002\tsalamander\n")
        for k, wnid in enumerate(wnids):
            for i in range(2):
                zf.writestr(f"{root}train/{wnid}/images/{wnid}_{i}.JPEG", _jpeg((200 * k, 0, 0)))
            zf.writestr(f"{root}train/{wnid}/{wnid}_boxes.txt", "")
        # val images live in one folder; their class is only in val_annotations.txt
        zf.writestr(root + "val/images/val_0.JPEG", _jpeg(128, mode="L"))  # grayscale -> RGB
        zf.writestr(root + "val/images/val_1.JPEG", _jpeg((0, 0, 250)))
        zf.writestr(root + "val/val_annotations.txt", "val_0.JPEG\tn001\t0\t0\t63\t63\nval_1.JPEG\tn002\t1\t1\t60\t60\n")
        zf.writestr(root + "test/images/test_0.JPEG", _jpeg((9, 9, 9)))
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    raw = BUILDERS["tinyimagenet"]({"path": str(path), "md5": md5})
    assert raw.class_names == ["salamander", "goldfish"]
    assert raw.x_train.shape == (4, 64, 64, 3) and sorted(raw.y_train.tolist()) == [0, 0, 1, 1]
    assert raw.y_test.tolist() == [1, 0]  # val_0 -> n001 (index 1), val_1 -> n002 (index 0)
    assert raw.x_test.shape == (2, 64, 64, 3)
    assert np.ptp(raw.x_test[0].astype(int), axis=-1).max() == 0  # grayscale copied to 3 channels
    assert raw.x_test[1, ..., 2].mean() > 200
