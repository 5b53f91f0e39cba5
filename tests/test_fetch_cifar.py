"""Offline test of the real CIFAR-10 fetch path: an archive in the official
layout built from genuine CIFAR-10 images, served over HTTP on 127.0.0.1 and
fetched through the CLI users run, with the url/md5 overridden in the config."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from _eval_fixtures import serve_directory, shared_npz_or_skip, write_cifar10_archive
from soften.__main__ import main

N_TRAIN, N_TEST = 250, 60


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    src = shared_npz_or_skip()
    with np.load(src, allow_pickle=False) as f:
        data = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test", "class_names")}
    served = tmp_path_factory.mktemp("served")
    path = served / "cifar-10-python.tar.gz"
    md5 = write_cifar10_archive(path, data["x_train"][:N_TRAIN], data["y_train"][:N_TRAIN],
                                data["x_test"][:N_TEST], data["y_test"][:N_TEST], data["class_names"])
    return {"dir": served, "path": path, "md5": md5, "data": data}


def write_config(tmp: Path, options: dict, val_size: int = 20) -> Path:
    cfg = {
        "resources_dir": str(tmp / "resources"),
        "results_dir": str(tmp / "results"),
        "experiments": {"main": {"datasets": ["cifar10"], "noise": ["none"], "archs": ["cnn"], "methods": ["standard"],
                                 "seeds": [0], "attacks": ["natural"]}},
        "datasets": {"cifar10": {"source": "cifar10", "val_size": val_size, "options": options,
                                 "threat": {"eps": 8 / 255, "alpha": 2 / 255, "steps": 10}}},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*")) if path.exists() else []


def test_archive_fetched_over_http_matches_source_images(archive, tmp_path, capsys):
    with serve_directory(archive["dir"]) as base:
        config = write_config(tmp_path, {"url": f"{base}/cifar-10-python.tar.gz", "md5": archive["md5"]})
        out = tmp_path / "resources" / "datasets" / "cifar10.npz"
        assert main(["fetch", "--configfile", str(config), "--dataset", "cifar10", "--out", str(out)]) == 0
    data = archive["data"]
    with np.load(out, allow_pickle=False) as f:
        got = {k: f[k] for k in f.files}
    # Test split: exactly the source images and labels, in order (reference: the shared npz).
    np.testing.assert_array_equal(got["x_test"], data["x_test"][:N_TEST])
    np.testing.assert_array_equal(got["y_test"], data["y_test"][:N_TEST])
    # Train + val together are the 250 source training images (val carved out, stratified).
    assert len(got["y_train"]) + len(got["y_val"]) == N_TRAIN and len(got["y_val"]) == 20
    merged = np.concatenate([got["x_train"], got["x_val"]]).reshape(N_TRAIN, -1)
    source = data["x_train"][:N_TRAIN].reshape(N_TRAIN, -1)
    assert sorted(map(bytes, merged)) == sorted(map(bytes, source))
    assert list(got["class_names"]) == list(data["class_names"])
    # The verified archive is cached for the next fetch.
    cached = tmp_path / "resources" / "downloads" / "cifar-10-python.tar.gz"
    assert hashlib.md5(cached.read_bytes()).hexdigest() == archive["md5"]


def test_corrupt_download_fails_and_leaves_nothing(archive, tmp_path, capsys):
    bad_dir = tmp_path / "served-bad"
    bad_dir.mkdir()
    raw = bytearray(archive["path"].read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one corrupted byte
    (bad_dir / "cifar-10-python.tar.gz").write_bytes(bytes(raw))
    bad_md5 = hashlib.md5(bytes(raw)).hexdigest()
    with serve_directory(bad_dir) as base:
        config = write_config(tmp_path, {"url": f"{base}/cifar-10-python.tar.gz", "md5": archive["md5"]})
        out = tmp_path / "resources" / "datasets" / "cifar10.npz"
        code = main(["fetch", "--configfile", str(config), "--dataset", "cifar10", "--out", str(out)])
    err = capsys.readouterr().err
    assert code != 0
    assert "cifar-10-python.tar.gz" in err and archive["md5"] in err and bad_md5 in err
    assert files_under(tmp_path / "resources") == []


def test_truncated_local_archive_is_rejected_by_md5(archive, tmp_path, capsys):
    short = tmp_path / "cifar-10-python.tar.gz"
    short.write_bytes(archive["path"].read_bytes()[:-1000])
    config = write_config(tmp_path, {"path": str(short), "md5": archive["md5"]})
    code = main(["fetch", "--configfile", str(config), "--dataset", "cifar10", "--out", str(tmp_path / "resources/datasets/cifar10.npz")])
    err = capsys.readouterr().err
    assert code != 0 and str(short) in err and archive["md5"] in err
    assert hashlib.md5(short.read_bytes()).hexdigest() in err
    assert files_under(tmp_path / "resources") == []


def test_path_source_reads_local_archive_without_network(archive, tmp_path):
    config = write_config(tmp_path, {"path": str(archive["path"]), "md5": archive["md5"]}, val_size=0)
    out = tmp_path / "resources" / "datasets" / "cifar10.npz"
    assert main(["fetch", "--configfile", str(config), "--dataset", "cifar10", "--out", str(out)]) == 0
    with np.load(out, allow_pickle=False) as f:
        np.testing.assert_array_equal(f["x_train"], archive["data"]["x_train"][:N_TRAIN])
    assert not (tmp_path / "resources" / "downloads").exists()


def test_cifar10_mini_reads_shared_npz(tmp_path):
    src = shared_npz_or_skip()
    from soften.data.sources import BUILDERS

    raw = BUILDERS["cifar10-mini"]({"path": str(src)})
    with np.load(src, allow_pickle=False) as f:
        np.testing.assert_array_equal(raw.x_test, f["x_test"])
        assert raw.x_train.shape == (10000, 32, 32, 3)
    with pytest.raises(ValueError, match="sha256"):
        BUILDERS["cifar10-mini"]({"path": str(src), "sha256": "0" * 64})


def test_fixture_archive_loads_with_torchvision(archive, tmp_path):
    """Independent check that the test archive has the official layout: torchvision's
    own CIFAR10 loader (md5 checks switched off) reads the same images."""
    import tarfile

    torchvision = pytest.importorskip("torchvision")
    with tarfile.open(archive["path"]) as tar:
        tar.extractall(tmp_path, filter="data")

    class Unverified(torchvision.datasets.CIFAR10):
        train_list = [[f"data_batch_{i}", None] for i in range(1, 6)]
        test_list = [["test_batch", None]]
        meta = {"filename": "batches.meta", "key": "label_names", "md5": None}

    test = Unverified(str(tmp_path), train=False)
    np.testing.assert_array_equal(test.data, archive["data"]["x_test"][:N_TEST])
    assert test.classes == list(archive["data"]["class_names"])


def test_cifar100_archive_and_extracted_folder(tmp_path):
    import tarfile

    from _eval_fixtures import write_cifar100_archive
    from soften.data.sources import BUILDERS

    rng = np.random.default_rng(0)
    x_tr, x_te = rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8), rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    y_tr, y_te = rng.integers(0, 100, 30), rng.integers(0, 100, 10)
    archive = tmp_path / "cifar-100-python.tar.gz"
    md5 = write_cifar100_archive(archive, x_tr, y_tr, x_te, y_te)
    raw = BUILDERS["cifar100"]({"path": str(archive), "md5": md5})
    np.testing.assert_array_equal(raw.x_train, x_tr)
    np.testing.assert_array_equal(raw.y_test, y_te)  # fine labels
    assert len(raw.class_names) == 100 and raw.class_names[7] == "beetle"  # the archive's fine_label_names
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "extracted", filter="data")
    folder = BUILDERS["cifar100"]({"path": str(tmp_path / "extracted")})  # a folder: no md5 to check
    np.testing.assert_array_equal(folder.x_test, x_te)
