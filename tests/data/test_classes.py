"""Classes are declared, not guessed from max(label) + 1 (issue 12, defects 3, 4)."""

import os

import numpy as np
import pytest
from PIL import Image

from epsd_tf import data
from tests.data.helpers import id_images, write_idx_dir


def _npz(tmp_path, y_train, y_test, **extra):
    path = str(tmp_path / "d.npz")
    np.savez(path, x_train=id_images(len(y_train)), y_train=np.asarray(y_train),
             x_test=id_images(len(y_test)), y_test=np.asarray(y_test), **extra)
    return path


def _load(path, **kwargs):
    return data.load("d", source="npz", path=path, validation_fraction=0.0, batch_size=2,
                     **kwargs)


def test_contiguous_undeclared_npz_labels_give_k_classes(tmp_path):
    splits = _load(_npz(tmp_path, np.arange(12) % 3, [0, 1, 2]))
    assert splits.info.num_classes == 3


def test_labels_one_to_ten_are_refused_without_a_class_list(tmp_path):
    path = _npz(tmp_path, np.arange(20) % 10 + 1, np.arange(10) + 1)
    with pytest.raises(ValueError, match=r"training labels \[1, 2, .* are not 0 \.\. K-1"):
        _load(path)
    # Declared, they are checked against the classes instead: label 10 of 10 is out.
    with pytest.raises(ValueError, match=r"train labels \[10\] are outside the 10 declared"):
        _load(path, num_classes=10)


def test_a_stray_label_1000_is_refused(tmp_path):
    y_train = np.arange(20) % 4
    y_train[7] = 1000
    with pytest.raises(ValueError, match="not 0 .. K-1 and no class list is declared"):
        _load(_npz(tmp_path, y_train, [0, 1, 2, 3]))


def test_a_test_label_absent_from_training_is_refused(tmp_path):
    path = _npz(tmp_path, np.arange(12) % 3, [0, 1, 3], num_classes=4)
    with pytest.raises(ValueError, match=r"test labels \[3\] never occur in the training"):
        _load(path)


def test_given_validation_labels_must_occur_in_training(tmp_path):
    path = str(tmp_path / "v.npz")
    np.savez(path, x_train=id_images(8), y_train=np.arange(8) % 2, x_test=id_images(2),
             y_test=[0, 1], x_val=id_images(3), y_val=[0, 1, 2], num_classes=3)
    with pytest.raises(ValueError, match=r"validation labels \[2\] never occur"):
        data.load("v", source="npz", path=path, batch_size=2)


def test_npz_declares_its_classes(tmp_path):
    names = np.array(["cat", "dog", "eel", "fox"])
    splits = _load(_npz(tmp_path, np.arange(12) % 3, [0, 1, 2], class_names=names))
    # Declared: 4 classes although class 3 has no example (a warning, not an error).
    assert splits.info.num_classes == 4
    assert splits.info.class_names == ("cat", "dog", "eel", "fox")
    assert _load(_npz(tmp_path, np.arange(12) % 3, [0, 1], num_classes=5)).info.num_classes == 5


@pytest.mark.parametrize("extra, kwargs, message", [
    ({"num_classes": 5}, {"num_classes": 4}, r"disagree \(the npz data: 5; num_classes=: 4\)"),
    ({"num_classes": 3, "class_names": np.array(["a", "b"])}, {}, "disagree"),
    ({"num_classes": np.array([3, 4])}, {}, "num_classes must be a scalar integer"),
    ({"class_names": np.array([1, 2])}, {}, "class_names must be a 1-D string array"),
    ({"class_names": np.array(["a", "a", "b"])}, {}, "duplicate class names"),
])
def test_conflicting_or_malformed_declarations(tmp_path, extra, kwargs, message):
    path = _npz(tmp_path, np.arange(12) % 3, [0, 1, 2], **extra)
    with pytest.raises(ValueError, match=message):
        _load(path, **kwargs)


def test_one_class_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"has 1 class\(es\); classification needs >= 2"):
        _load(_npz(tmp_path, np.zeros(6, int), [0, 0]))


def test_a_one_class_image_folder_is_refused(tmp_path):
    for split, count in (("train", 3), ("test", 1)):
        os.makedirs(tmp_path / split / "only")
        for i in range(count):
            Image.fromarray(np.full((4, 4), i * 40, np.uint8), "L").save(
                tmp_path / split / "only" / f"{i}.png")
    with pytest.raises(ValueError, match="has 1 class"):
        data.load("f", source="folder", path=str(tmp_path), batch_size=1)


def test_idx_of_an_unknown_dataset_needs_num_classes(tmp_path):
    write_idx_dir(tmp_path, gz=True, num_classes=10)
    with pytest.raises(ValueError, match="IDX files carry no class list.*pass num_classes="):
        data.load("my_digits", source="idx", path=str(tmp_path))
    splits = data.load("fashion_mnist", source="idx", path=str(tmp_path), batch_size=4)
    assert splits.info.num_classes == 10
    assert splits.info.class_names == data.KNOWN_DATASETS["fashion_mnist"].class_names
    with pytest.raises(ValueError, match="disagree"):
        data.load("fashion_mnist", source="idx", path=str(tmp_path), num_classes=12)


def test_synthetic_data_generates_the_classes_it_declares():
    splits = data.load("synthetic", num_classes=6, num_examples=60, batch_size=4)
    assert splits.info.num_classes == 6
    assert set(np.unique(splits.train_arrays[1])) == set(range(6))
