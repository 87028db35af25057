"""Image-folder source: `path/train/<class>/*.png|jpg`, `path/test/<class>/...`,
optional `path/val/<class>/...`.

Classes are the sub-directory names of `train/`, sorted; label `i` is the i-th
name. Images are decoded once with Pillow into uint8 arrays; all must have one
size unless `image_size` is given (then each is resized on its shorter side to
`image_size` and centre-cropped).
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
from PIL import Image, ImageOps

from epsd_tf.data.arrays import ArraySplits

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _list_split(root: str, split: str, class_names: tuple):
    """Returns `[(file path, label)]` of `root/split/<class>/*`, in sorted order."""
    split_dir = os.path.join(root, split)
    present = sorted(d for d in os.listdir(split_dir)
                     if os.path.isdir(os.path.join(split_dir, d)))
    unknown = sorted(set(present) - set(class_names))
    if unknown:
        raise ValueError(
            f"{split_dir!r} has classes {unknown} that train/ lacks; valid: "
            f"{list(class_names)}")
    files = []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(split_dir, name)
        if not os.path.isdir(class_dir):
            continue
        files += [(os.path.join(class_dir, f), label) for f in sorted(os.listdir(class_dir))
                  if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
        raise ValueError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {split_dir!r}")
    return files


def _decode(files, grey: bool, image_size: Optional[int], split: str):
    images = []
    for path, _ in files:
        with Image.open(path) as image:
            image = image.convert("L" if grey else "RGB")
            if image_size is not None:
                image = ImageOps.fit(image, (image_size, image_size),
                                     Image.Resampling.BILINEAR)
            images.append(np.asarray(image, dtype=np.uint8))
    sizes = sorted({image.shape[:2] for image in images})
    if len(sizes) > 1:
        raise ValueError(
            f"{split} images have different sizes {sizes[:4]}; pass image_size= "
            "to resize them")
    return np.stack(images)


def load_folder(path: str, image_size: Optional[int] = None) -> ArraySplits:
    """Decodes an image-folder dataset into `ArraySplits`.

    Images are grey (1 channel) when every training image is a one-band image
    (Pillow mode "L", "1", "I", "I;16"), else RGB (3 channels).

    Raises:
        FileNotFoundError: `path`, `path/train` or `path/test` missing.
        ValueError: no class directories, no images, or classes outside train/.
    """
    for required in (path, os.path.join(path, "train"), os.path.join(path, "test")):
        if not os.path.isdir(required):
            raise FileNotFoundError(
                f"image folder {required!r} not found; the folder source needs "
                "path/train/<class>/*.png|jpg and path/test/<class>/... "
                "(optional path/val/<class>/...)")
    train_dir = os.path.join(path, "train")
    class_names = tuple(sorted(d for d in os.listdir(train_dir)
                               if os.path.isdir(os.path.join(train_dir, d))))
    if not class_names:
        raise ValueError(f"{train_dir!r} has no class sub-directories")
    splits = {split: _list_split(path, split, class_names)
              for split in ("train", "val", "test")
              if split != "val" or os.path.isdir(os.path.join(path, "val"))}
    grey = True
    for file_path, _ in splits["train"]:
        with Image.open(file_path) as image:
            grey = grey and image.mode in ("L", "1", "I", "I;16")
    arrays = {split: (_decode(files, grey, image_size, split),
                      np.array([label for _, label in files], np.int32))
              for split, files in splits.items()}
    val = arrays.get("val", (None, None))
    return ArraySplits(*arrays["train"], *arrays["test"], val[0], val[1],
                       class_names=class_names)
