"""Train / validation / test splits, and the record of them that model files carry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecnn.data import DataError, Preprocess
from edgecnn.data.splits import SplitSpec, held_out_images, load_splits, record, recorded_split, resolve
from edgecnn.errors import BadArgumentError
from edgecnn.zoo import card_for

PRE = Preprocess.for_model(card_for("lenet5"))


def folder(root: Path, classes=("a", "b", "c"), per_class: int = 10) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def names(dataset) -> set[str]:
    return {str(dataset.base.samples[i][0]) for i in dataset.indices}


def test_a_folder_is_split_three_ways_and_the_same_way_every_time(tmp_path):
    data = folder(tmp_path / "mine")
    splits = load_splits(resolve(str(data), test_fraction=0.2, val_fraction=0.1, seed=3), PRE)
    train, val, test = names(splits.train), names(splits.val), names(splits.test)
    assert (len(train), len(val), len(test)) == (21, 3, 6)
    assert not (train & val or train & test or val & test)  # validation never counts as test
    again = load_splits(resolve(str(data), seed=3), PRE)
    assert names(again.test) == test
    assert names(load_splits(resolve(str(data), seed=4), PRE).test) != test
    assert splits.test_set == f"6 images from {data.resolve()} (test: seeded 20% split, seed 3)"
    rec = record(splits)
    assert rec["test_images"] == 6 and len(rec["test_digest"]) == 16
    assert recorded_split({"data": json.loads(json.dumps(rec))}) == SplitSpec(**rec)


def test_the_digits_keep_their_fixed_test_split():
    splits = load_splits("digits", PRE)
    assert splits.test.source == "digits:test" and len(splits.test) == 1000
    assert len(splits.train) + len(splits.val) == 4000
    with pytest.raises(BadArgumentError, match="--test-data goes with an image folder"):
        resolve("digits", test_data="elsewhere")


def test_a_train_test_layout_and_a_test_folder_are_used_as_given(tmp_path):
    root = tmp_path / "layout"
    folder(root / "train")
    folder(root / "test", per_class=4)
    spec = resolve(str(root))
    assert Path(spec.data) == (root / "train").resolve() and Path(spec.test_data) == (root / "test").resolve()
    splits = load_splits(spec, PRE)
    assert len(splits.test) == 12 and len(splits.train) + len(splits.val) == 30
    assert spec.same_data(str(root)) and spec.same_data(str(root / "train"))
    # --data layout on a model that recorded it: the test/ images, not the folder's train/ + test/
    rec = {"data": record(splits), "class_names": ["a", "b", "c"], "model": "lenet5"}
    assert len(held_out_images(str(root), PRE, rec)) == 12
    assert len(held_out_images(str(root), PRE)) == 12  # a zoo model given the layout: its test/
    other = folder(tmp_path / "other", classes=("a", "b", "x"), per_class=2)
    with pytest.raises(DataError, match=r"classes \[a, b, x\], the training folder .* has \[a, b, c\]"):
        load_splits(resolve(str(root / "train"), test_data=str(other)), PRE)
    with pytest.raises(DataError, match=r"lenet5 was trained on \[a, b, c\]"):
        held_out_images(str(other), PRE, rec)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (dict(test_fraction=0.0), "--test-fraction must be between 0 and 1"),
        (dict(test_fraction=0.5, val_fraction=0.45), "almost nothing to train on"),
        (dict(test_data="missing"), "test folder not found"),
    ],
)
def test_bad_split_flags_are_one_line_errors(tmp_path, flags, message):
    data = folder(tmp_path / "mine", per_class=2)
    with pytest.raises((BadArgumentError, DataError), match=message) as e:
        resolve(str(data), **flags)
    assert "\n" not in str(e.value)


def test_a_changed_folder_is_noticed(tmp_path, caplog):
    data = folder(tmp_path / "mine")
    rec = record(load_splits(resolve(str(data)), PRE))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(data / "a" / "new.png")
    load_splits(SplitSpec(**rec), PRE, recorded=True)
    assert "differ from the ones the model file recorded" in caplog.text


@pytest.mark.parametrize(
    "bad",
    [{"data": 3}, {"data": "x", "seed": "0"}, {"data": "x", "test_fraction": 2}, {"data": "x", "extra": 1}],
)
def test_a_tampered_split_record_is_refused(bad):
    with pytest.raises(ValueError):
        SplitSpec.from_dict(bad)


def test_a_model_file_away_from_its_images_is_benched_without_top1(tmp_path, caplog):
    data = folder(tmp_path / "mine")
    rec = {"model": "lenet5", "data": record(load_splits(resolve(str(data)), PRE))}
    assert len(held_out_images(None, PRE, rec)) == 6
    data.rename(tmp_path / "moved")
    assert held_out_images(None, PRE, rec) is None and "give --data" in caplog.text
