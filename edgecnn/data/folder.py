"""Image folders: ImageNet-style class subfolders, or a flat folder (optionally with a labels file).

The flat layout with a labels file is ImageNet's validation set as distributed: sorted file names
and one class index per line (or lines of "file label").
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgecnn.data.dataset import ImageDataset
from edgecnn.errors import EdgeCNNError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class DataError(EdgeCNNError):
    """A data folder that cannot be used as asked (missing, empty, one class, bad labels file)."""


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


class ImageFolder(ImageDataset):
    def __init__(self, root, preprocess, *, labels_file=None, min_classes: int = 0):
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"data folder not found: {root}")
        subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        flat = _images(root)
        self.samples: list[tuple[Path, int]] = []
        if subdirs and not flat and labels_file is None:
            with_images = [(d, _images(d)) for d in subdirs]
            with_images = [(d, files) for d, files in with_images if files]
            self.classes = tuple(d.name for d, _ in with_images)
            for label, (_, files) in enumerate(with_images):
                self.samples += [(f, label) for f in files]
        elif labels_file is not None:
            self.samples = _read_labels(root, flat, Path(labels_file))
            self.classes = tuple(str(c) for c in sorted({label for _, label in self.samples}))
        else:
            self.samples = [(f, -1) for f in flat]
            self.classes = ()
        if not self.samples:
            raise DataError(
                f"no images in {root} (looked for {', '.join(IMAGE_EXTENSIONS)} files, "
                "directly or in class subfolders)"
            )
        if len(self.classes) < min_classes:
            raise DataError(
                f"{root} has {len(self.classes)} class folder(s) with images; at least {min_classes} "
                "are needed (one subfolder per class)"
            )
        self.preprocess = preprocess
        self.source = str(root)
        self.skipped = 0
        log.info("%s: %d images, %d classes", root, len(self.samples), len(self.classes))

    @property
    def labelled(self) -> bool:
        return bool(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def label_values(self) -> np.ndarray:
        return np.array([label for _, label in self.samples], dtype=np.int64)

    def name_of(self, index: int) -> str:
        return self.samples[index][0].name

    def load(self, index: int):
        from PIL import Image

        path, label = self.samples[index]
        with Image.open(path) as image:
            image.load()
            return image.copy(), label


def _read_labels(root: Path, files: list[Path], labels_file: Path) -> list[tuple[Path, int]]:
    if not labels_file.is_file():
        raise DataError(f"labels file not found: {labels_file}")
    lines = [ln.split() for ln in labels_file.read_text().splitlines() if ln.strip()]
    try:
        if all(len(parts) == 2 for parts in lines):
            by_name = {name: int(label) for name, label in lines}
            missing = [f.name for f in files if f.name not in by_name]
            if missing:
                raise DataError(f"{labels_file} has no label for {missing[0]} ({len(missing)} files)")
            return [(f, by_name[f.name]) for f in files]
        if all(len(parts) == 1 for parts in lines):
            if len(lines) != len(files):
                raise DataError(
                    f"{labels_file} has {len(lines)} labels for {len(files)} images in {root}; "
                    "one label per sorted file name is expected"
                )
            return [(f, int(parts[0])) for f, parts in zip(files, lines, strict=True)]
    except ValueError:
        pass
    raise DataError(f"{labels_file}: expected one integer label per line, or 'file label' per line")
