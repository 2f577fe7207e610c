"""Train / validation / test, made once and recorded in every model file made from them.

The test images are never seen by training or by early stopping, and the record (`SplitSpec`) in a
model file's header lets every later command (distill, bench, pipeline) score exactly those images:
that is what makes "teacher 96.0%, student 95.5%" a comparison.

Where the test images come from, in order:
- the bundled digits: their fixed 1,000-image test split;
- `--test-data DIR`: a separate folder with the same class subfolders;
- a folder laid out as `train/` and `test/` (and optionally `val/`), each with class subfolders;
- otherwise a seeded share of the folder (`test_fraction`), recorded with its seed and a digest of
  the chosen file names, so a changed folder is noticed rather than silently scored.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgecnn.data import DIGITS
from edgecnn.data.dataset import ImageDataset, Subset, split_dataset
from edgecnn.data.folder import DataError
from edgecnn.errors import BadArgumentError

log = logging.getLogger(__name__)

LAYOUT = ("train", "test")  # a folder holding these two subfolders is split by its own layout


@dataclass(frozen=True)
class SplitSpec:
    """How a dataset was split; JSON-able, so it travels in model files."""

    data: str  # "digits" or the training folder
    test_data: str | None = None  # a separate test folder (--test-data, or the layout's test/)
    val_data: str | None = None  # the layout's val/ folder, if it has one
    test_fraction: float = 0.2  # seeded share of `data` held out as test when there is no test folder
    val_fraction: float = 0.1  # share of the training images held out for early stopping
    seed: int = 0
    labels_file: str | None = None
    test_images: int | None = None  # recorded after the split was made: how many, and which
    test_digest: str | None = None

    def validate(self) -> SplitSpec:
        for name in ("test_fraction", "val_fraction"):
            value = getattr(self, name)
            if not 0 < value < 1:
                flag = name.replace("_", "-")
                raise BadArgumentError(f"--{flag} must be between 0 and 1, got {value}")
        if self.test_data is None and self.data != DIGITS and self.test_fraction + self.val_fraction >= 0.9:
            raise BadArgumentError(
                f"--test-fraction {self.test_fraction} and --val-fraction {self.val_fraction} leave "
                "almost nothing to train on"
            )
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SplitSpec:
        """From a model file's header; unknown or mistyped fields are a one-line error."""
        if not isinstance(d, dict):
            raise ValueError("must be an object")
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"has unknown field {sorted(unknown)[0]!r}")
        if not isinstance(d.get("data"), str) or not d["data"]:
            raise ValueError("needs 'data', the training images' folder or 'digits'")
        for key in ("test_data", "val_data", "labels_file", "test_digest"):
            if d.get(key) is not None and not isinstance(d[key], str):
                raise ValueError(f"field {key!r} must be a string")
        for key in ("test_fraction", "val_fraction"):
            if key in d and not (isinstance(d[key], int | float) and 0 < d[key] < 1):
                raise ValueError(f"field {key!r} must be between 0 and 1")
        for key in ("seed", "test_images"):
            if d.get(key) is not None and type(d[key]) is not int:
                raise ValueError(f"field {key!r} must be an integer")
        return cls(**d)

    def same_data(self, data: str) -> bool:
        """Whether `data` (a command's --data) names this split's images."""
        if str(data) == DIGITS or self.data == DIGITS:
            return str(data) == self.data
        given = Path(data).resolve()
        return given in (Path(self.data).resolve(), *_layout_roots(self))


def _layout_roots(spec: SplitSpec) -> tuple[Path, ...]:
    """The folder a layout split came from (mydata for mydata/train), to recognise `--data mydata`."""
    train = Path(spec.data).resolve()
    if spec.test_data and train.name == LAYOUT[0] and Path(spec.test_data).resolve().parent == train.parent:
        return (train.parent,)
    return ()


@dataclass
class Splits:
    train: ImageDataset
    val: ImageDataset
    test: ImageDataset
    classes: tuple[str, ...]
    source: str
    split: SplitSpec | None = None

    @property
    def test_set(self) -> str:
        """What the reports say: '60 images from mydata (test: seeded 20% split, seed 0)'."""
        return f"{len(self.test)} images from {self.test.source}"


def resolve(
    data: str,
    *,
    test_data: str | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    seed: int = 0,
    labels_file: str | None = None,
) -> SplitSpec:
    """The split a command's --data / --test-data ask for, with folders made absolute (a model file
    is read from other working directories) and a `train/` + `test/` layout recognised."""
    if str(data) == DIGITS:
        if test_data is not None:
            raise BadArgumentError(
                "--test-data goes with an image folder; the digits have their own test split"
            )
        return SplitSpec(DIGITS, val_fraction=val_fraction, seed=seed).validate()
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    val_data = None
    if test_data is None and all((root / part).is_dir() for part in LAYOUT):
        val_data = str((root / "val").resolve()) if (root / "val").is_dir() else None
        test_data, root = str(root / "test"), root / "train"
        log.info("%s: using its own train/ and test/ folders", data)
    if test_data is not None and not Path(test_data).is_dir():
        raise DataError(f"test folder not found: {test_data}")
    # Missing, empty, one-class or mislabelled data: one line naming the folder as the user wrote it,
    # before any work (the split itself is made from absolute paths, which the model file records).
    from edgecnn.data.folder import ImageFolder

    ImageFolder(root, None, min_classes=2, labels_file=labels_file)
    return SplitSpec(
        str(root.resolve()),
        test_data=str(Path(test_data).resolve()) if test_data else None,
        val_data=val_data,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        seed=seed,
        labels_file=str(Path(labels_file).resolve()) if labels_file else None,
    ).validate()


def load_splits(
    data, preprocess, *, val_fraction: float = 0.1, seed: int = 0, labels_file=None, recorded=None
) -> Splits:
    """train / val (early stopping) / test, three disjoint sets.

    data: a SplitSpec, or a --data value split with the defaults. recorded: True when the spec comes
    from a model file: the test images are checked against the ones it recorded."""
    spec = (
        data
        if isinstance(data, SplitSpec)
        else resolve(data, val_fraction=val_fraction, seed=seed, labels_file=labels_file)
    )
    from edgecnn.data import open_dataset

    if spec.data == DIGITS:
        full = open_dataset(DIGITS, preprocess, split="train")
        train, val = split_dataset(full, spec.val_fraction, spec.seed)
        test = open_dataset(DIGITS, preprocess, split="test")
        return Splits(train, val, test, full.classes, DIGITS, spec)
    full = open_dataset(spec.data, preprocess, min_classes=2, labels_file=spec.labels_file)
    if not full.classes:
        raise BadArgumentError(f"{spec.data} has no labels: training needs class subfolders or --labels FILE")
    if spec.test_data is not None:
        test = _same_classes(open_dataset(spec.test_data, preprocess), full, "test")
        if spec.val_data is not None:
            train, val = full, _same_classes(open_dataset(spec.val_data, preprocess), full, "validation")
        else:
            train, val = split_dataset(full, spec.val_fraction, spec.seed)
    else:
        order = np.random.default_rng(spec.seed).permutation(len(full))
        n_test = max(1, round(len(full) * spec.test_fraction))
        n_val = max(1, round(len(full) * spec.val_fraction))
        if len(full) - n_test - n_val < 1:
            raise DataError(f"{spec.data} has {len(full)} images: too few to split into train, val and test")
        share = f"test: seeded {spec.test_fraction:.0%} split, seed {spec.seed}"
        test = Subset(full, order[:n_test], share)
        test.source = f"{spec.data} ({share})"
        val = Subset(full, order[n_test : n_test + n_val], "val")
        train = Subset(full, order[n_test + n_val :], "train")
    if recorded:
        _check_recorded(spec, test)
    return Splits(train, val, test, full.classes, spec.data, spec)


def record(splits: Splits) -> dict:
    """The split as a model file records it: the spec plus which test images it held."""
    from dataclasses import replace

    return replace(splits.split, test_images=len(splits.test), test_digest=_digest(splits.test)).to_dict()


def _digest(test: ImageDataset) -> str | None:
    """A digest of the test images' file names (relative to their folder); None for the digits."""
    if isinstance(test, Subset) and hasattr(test.base, "samples"):
        root = Path(test.base.source)
        names = [str(test.base.samples[i][0].relative_to(root)) for i in test.indices]
    elif hasattr(test, "samples"):
        root = Path(test.source)
        names = [str(p.relative_to(root)) for p, _ in test.samples]
    else:
        return None
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def _check_recorded(spec: SplitSpec, test: ImageDataset) -> None:
    """A folder that changed since the model file was written gives other test images: say so."""
    if spec.test_images is None:
        return
    digest = _digest(test)
    if len(test) != spec.test_images or (spec.test_digest and digest and digest != spec.test_digest):
        log.warning(
            "the test images of %s differ from the ones the model file recorded (%d then, %d now): "
            "accuracy is not comparable with the figures measured then",
            spec.data,
            spec.test_images,
            len(test),
        )


def _same_classes(other: ImageDataset, train: ImageDataset, what: str) -> ImageDataset:
    if tuple(other.classes) != tuple(train.classes):
        raise DataError(
            f"the {what} folder {other.source} has classes {_names(other.classes)}, the training folder "
            f"{train.source} has {_names(train.classes)}; they must be the same subfolders"
        )
    return other


def _names(classes) -> str:
    shown = ", ".join(classes[:6]) + (", ..." if len(classes) > 6 else "")
    return f"[{shown}]" if classes else "none"


def _present(split: SplitSpec) -> bool:
    folders = [split.data, split.test_data] if split.data != DIGITS else []
    return all(Path(f).is_dir() for f in folders if f)


def check_classes(recorded: list[str] | None, classes, source: str, model: str) -> None:
    """The data a model is scored or trained on must have the model's classes, in its order."""
    if recorded is not None and tuple(recorded) != tuple(classes):
        raise DataError(
            f"{source} has classes {_names(tuple(classes))}, {model} was trained on {_names(tuple(recorded))}"
        )


def recorded_split(recipe: dict | None) -> SplitSpec | None:
    """The split a model file's header records (None when it records none)."""
    data = (recipe or {}).get("data")
    return SplitSpec.from_dict(data) if data else None


def splits_for(data, preprocess, *recipes: dict | None, val_fraction: float = 0.1, seed: int = 0) -> Splits:
    """The split the first of `recipes` records, when `data` is not given or names those images (the
    test images training held out stay held out); else `data` (the digits when None) split afresh."""
    for recipe in recipes:
        split = recorded_split(recipe)
        if split is not None and (data is None or split.same_data(data)):
            return load_splits(split, preprocess, recorded=True)
    return load_splits(data or DIGITS, preprocess, val_fraction=val_fraction, seed=seed)


def held_out_images(data: str | None, preprocess, recipe: dict | None = None) -> ImageDataset | None:
    """The images a model is scored on: the test split its file records when `data` is not given or
    names the data it was trained on (never its training images), else `data`'s own test images (the
    digits' test split, a folder's test/ subfolder, or the whole folder). None: nothing to score on.
    Images whose classes differ from the ones the model was trained on are a one-line error."""
    from edgecnn.data import open_dataset

    split = recorded_split(recipe)
    if data is None and split is None:
        return None
    if data is None and not _present(split):  # a model file copied to a machine without its images
        log.warning(
            "top-1 not measured: the test images %s recorded are not here (%s); give --data",
            (recipe or {}).get("model", "the model"),
            split.test_data or split.data,
        )
        return None
    if split is not None and (data is None or split.same_data(data)):
        return load_splits(split, preprocess, recorded=True).test
    if str(data) != DIGITS and all((Path(data) / part).is_dir() for part in LAYOUT):
        data = str(Path(data) / "test")
    dataset = open_dataset(data, preprocess, split="test")
    model = (recipe or {}).get("model", "the model")
    check_classes((recipe or {}).get("class_names"), dataset.classes, dataset.source, model)
    return dataset
