"""Sources of epsd_tf.data.load: IDX (gz and raw), npz, folder, synthetic, auto."""

import gzip
import os

import numpy as np
import pytest
from PIL import Image

from epsd_tf import data
from epsd_tf.data import idx, pipeline
from tests.data.helpers import idx_bytes, write_idx_dir


def _train_images(splits):
    return np.stack([e["image"] for e in splits.train_examples.as_numpy_iterator()])


@pytest.mark.parametrize("gz", [True, False])
def test_idx_source_reads_gz_and_raw(tmp_path, gz):
    arrays = write_idx_dir(tmp_path / "idx", gz=gz)
    splits = data.load("my_mnist", source="idx", path=str(tmp_path / "idx"),
                       validation_fraction=0.0, batch_size=8, num_classes=10)
    assert splits.info.image_shape == (28, 28, 1)
    assert (splits.info.num_train, splits.info.num_validation, splits.info.num_test) == (40, 0, 20)
    assert splits.info.num_classes == 10
    np.testing.assert_array_equal(_train_images(splits)[..., 0],
                                  arrays["train-images-idx3-ubyte"])
    assert splits.train_examples.element_spec["image"].dtype.name == "uint8"


def test_idx_parser_rejects_bad_magic_and_sizes():
    good = idx_bytes(np.zeros((2, 3, 3), np.uint8))
    np.testing.assert_array_equal(idx.parse_idx(good), np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="not an IDX file"):
        idx.parse_idx(b"\x01\x00" + good[2:])
    with pytest.raises(ValueError, match="unknown IDX type 0x07"):
        idx.parse_idx(good[:2] + b"\x07" + good[3:])
    with pytest.raises(ValueError, match="holds 33 bytes .* needs 34"):
        idx.parse_idx(good[:-1])


def test_idx_label_count_mismatch(tmp_path):
    write_idx_dir(tmp_path, gz=False)
    with open(tmp_path / "train-labels-idx1-ubyte", "wb") as f:
        f.write(idx_bytes(np.zeros(39, np.uint8)))
    with pytest.raises(ValueError, match="train has 40 images but 39 labels"):
        data.load("x", source="idx", path=str(tmp_path))


def test_idx_wrong_image_rank(tmp_path):
    write_idx_dir(tmp_path, gz=False)
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(idx_bytes(np.zeros((40, 28), np.uint8)))
    os.remove(tmp_path / "train-images-idx3-ubyte")
    with pytest.raises(ValueError, match=r"must hold uint8 images \[N, H, W\]"):
        data.load("x", source="idx", path=str(tmp_path))


def test_idx_missing_directory_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load("fashion_mnist", source="idx", path=str(tmp_path / "nowhere"))


def test_idx_missing_file_is_named(tmp_path):
    write_idx_dir(tmp_path, gz=True)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        data.load("x", source="idx", path=str(tmp_path))


def test_known_dataset_checks_label_range(tmp_path):
    write_idx_dir(tmp_path, gz=True, num_classes=12)
    with pytest.raises(ValueError,
                       match=r"train labels \[10, 11\] are outside the 10 declared classes"):
        data.load("fashion_mnist", source="idx", path=str(tmp_path))


def test_npz_source_uses_given_validation(tmp_path):
    rng = np.random.default_rng(0)
    path = str(tmp_path / "d.npz")
    np.savez(path, x_train=rng.integers(0, 256, (30, 8, 8, 3)), y_train=np.arange(30) % 5,
             x_test=rng.integers(0, 256, (10, 8, 8, 3)), y_test=np.arange(10) % 5,
             x_val=rng.integers(0, 256, (7, 8, 8, 3)), y_val=np.arange(7) % 5)
    splits = data.load("d", source="npz", path=path, batch_size=4, validation_fraction=0.5)
    assert (splits.info.num_train, splits.info.num_validation, splits.info.num_test) == (30, 7, 10)
    assert splits.info.num_classes == 5 and splits.info.image_shape == (8, 8, 3)
    assert sum(int(y.shape[0]) for _, y in splits.validation) == 7


@pytest.mark.parametrize("change, message", [
    ({"y_train": np.arange(30) % 5 - 1}, "labels must be >= 0"),
    ({"x_train": np.zeros((30, 8), np.uint8)}, r"\[N, H, W\] or \[N, H, W, C\]"),
    ({"x_train": np.zeros((30, 8, 8, 2), np.uint8)}, "1 or 3 channels"),
    ({"x_train": np.zeros((30, 8, 8, 3), np.float32)}, "must be uint8"),
    ({"x_test": np.zeros((0, 8, 8, 3), np.uint8), "y_test": np.zeros(0)}, "test split is empty"),
    ({"x_test": np.zeros((10, 9, 9, 3), np.uint8)}, "image shapes differ"),
    ({"y_train": np.arange(29)}, "train has 30 images but 29 labels"),
])
def test_npz_bad_inputs(tmp_path, change, message):
    arrays = {"x_train": np.arange(30 * 192).reshape(30, 8, 8, 3) % 256,
              "y_train": np.arange(30) % 5,
              "x_test": np.zeros((10, 8, 8, 3), np.uint8), "y_test": np.arange(10) % 5}
    arrays.update(change)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        data.load("d", source="npz", path=str(tmp_path / "bad.npz"))


def test_npz_missing_file_and_arrays(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        data.load("d", source="npz", path=str(tmp_path / "nope.npz"))
    np.savez(tmp_path / "part.npz", x_train=np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match=r"lacks arrays \['y_train', 'x_test', 'y_test'\]"):
        data.load("d", source="npz", path=str(tmp_path / "part.npz"))


def _write_folder(root, split, classes, count, mode, size=(6, 6), ext="png"):
    rng = np.random.default_rng(len(split))
    for name in classes:
        os.makedirs(root / split / name, exist_ok=True)
        for i in range(count):
            shape = size[::-1] + ((3,) if mode == "RGB" else ())
            Image.fromarray(rng.integers(0, 256, shape, np.uint8), mode).save(
                root / split / name / f"{i}.{ext}")


def test_folder_source_sorts_classes_and_reads_grey(tmp_path):
    _write_folder(tmp_path / "g", "train", ["zebra", "ant", "moth"], 4, "L")
    _write_folder(tmp_path / "g", "test", ["moth", "ant"], 2, "L")
    splits = data.load("g", source="folder", path=str(tmp_path / "g"), batch_size=2,
                       validation_fraction=0.0)
    assert splits.info.class_names == ("ant", "moth", "zebra")
    assert splits.info.image_shape == (6, 6, 1) and splits.info.num_test == 4
    labels = [int(e["label"]) for e in splits.train_examples.as_numpy_iterator()]
    assert labels == [0] * 4 + [1] * 4 + [2] * 4


def test_folder_source_rgb_with_val_split_and_resize(tmp_path):
    _write_folder(tmp_path / "c", "train", ["a", "b"], 3, "RGB", (10, 8), "jpg")
    _write_folder(tmp_path / "c", "test", ["a", "b"], 1, "RGB", (10, 8), "jpg")
    _write_folder(tmp_path / "c", "val", ["b"], 2, "RGB", (10, 8), "jpg")
    splits = data.load("c", source="auto", path=str(tmp_path / "c"), batch_size=2,
                       image_size=8)
    assert splits.info.source == "folder"
    assert splits.info.image_shape == (8, 8, 3) and splits.info.num_validation == 2


def test_folder_without_train_dir_is_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="train"):
        data.load("f", source="folder", path=str(tmp_path))


def test_folder_test_classes_must_exist_in_train(tmp_path):
    _write_folder(tmp_path, "train", ["a"], 2, "L")
    _write_folder(tmp_path, "test", ["a", "zz"], 1, "L")
    with pytest.raises(ValueError, match=r"classes \['zz'\] that train/ lacks"):
        data.load("f", source="folder", path=str(tmp_path))


def test_folder_mixed_sizes_need_image_size(tmp_path):
    _write_folder(tmp_path, "train", ["a"], 2, "L", (6, 6))
    _write_folder(tmp_path, "train", ["b"], 2, "L", (7, 5))
    _write_folder(tmp_path, "test", ["a"], 1, "L")
    with pytest.raises(ValueError, match="pass image_size"):
        data.load("f", source="folder", path=str(tmp_path))


def test_synthetic_is_seeded_and_learnable():
    first = data.load("synthetic", num_examples=200, num_test=100, image_shape=(8, 8, 1),
                      num_classes=4, validation_fraction=0.0, batch_size=10)
    again = data.load("synthetic", num_examples=200, num_test=100, image_shape=(8, 8, 1),
                      num_classes=4, validation_fraction=0.0, batch_size=10)
    np.testing.assert_array_equal(first.train_arrays[0], again.train_arrays[0])
    assert np.bincount(first.train_arrays[1]).tolist() == [50] * 4
    # Learnable: nearest class-mean on test images is far above chance (25 %).
    x = first.train_arrays[0].astype(np.float32).reshape(200, -1)
    y = first.train_arrays[1]
    means = np.stack([x[y == c].mean(0) for c in range(4)])
    test_x = np.concatenate([b.numpy() for b, _ in first.test]).reshape(100, -1)
    test_y = np.concatenate([l.numpy() for _, l in first.test])
    test_pixels = test_x * first.info.std[0] * 255 + first.info.mean[0] * 255
    predictions = np.argmin(((test_pixels[:, None] - means[None]) ** 2).sum(-1), 1)
    assert np.mean(predictions == test_y) > 0.9


@pytest.mark.parametrize("args, kwargs, message", [
    (("cifar10",), {"source": "hdf5"}, r"Unknown source 'hdf5'; valid: \('auto', 'tfds'"),
    (("no_such_dataset",), {"source": "tfds"}, "Unknown dataset 'no_such_dataset'.*cifar10"),
    (("synthetic",), {"colour": True}, r"unknown synthetic options \['colour'\]"),
    (("cifar10",), {"source": "npz", "path": "x.npz", "num_examples": 3},
     "apply only to source='synthetic'"),
    (("cifar10",), {"source": "npz"}, "source='npz' needs path="),
])
def test_unknown_source_dataset_and_options(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.load(*args, **kwargs)


def test_auto_source_resolution(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "DATASETS_ROOT", str(tmp_path))
    write_idx_dir(tmp_path / "my-digits", gz=True)
    assert pipeline.resolve_source("my_digits", "auto", None) == (
        "idx", str(tmp_path / "my-digits"))
    assert pipeline.resolve_source("cifar10", "auto", None) == ("tfds", None)
    assert pipeline.resolve_source("synthetic", "auto", None) == ("synthetic", None)
    assert pipeline.resolve_source("d", "auto", "a/b.npz") == ("npz", "a/b.npz")
    with pytest.raises(ValueError, match="cannot tell the format"):
        pipeline.resolve_source("d", "auto", str(tmp_path))


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="dataset-fashion-mnist not installed")
def test_auto_reads_installed_fashion_mnist():
    splits = data.load("fashion_mnist", batch_size=128)
    assert splits.info.source == "idx"
    assert (splits.info.num_train + splits.info.num_validation, splits.info.num_test) == (
        60000, 10000)
    assert splits.info.mean == (0.2860,) and splits.info.num_classes == 10
