"""Your own model end to end, through the model files alone: fine-tune a 1000-class backbone on a
3-class folder -> convert -> distill -> export -> bench -> pipeline, with no --num-classes,
--input-size or --data repeated, and one top-1 for the same model on the same test images."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from _cli import run_cli
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from edgecnn.errors import BadArgumentError, WeightsError
from edgecnn.transforms import load_source
from edgecnn.zoo import create_model, load_model

CLASSES = ("one", "seven", "zero")  # folder names: the class names every file must carry
FAST = ("--no-memory", "--duration", "0.05", "--warmup", "0.05")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A 3-class folder of real digits (1, 7, 0), and a 1000-class ResNet-18 checkpoint to
    fine-tune (random: no ImageNet weights can be downloaded here)."""
    from edgecnn.data.digits import _raw

    root = tmp_path_factory.mktemp("mine")
    images, labels = _raw()
    for name, digit in zip(CLASSES, (1, 7, 0), strict=True):
        (root / "mine" / name).mkdir(parents=True)
        for i, image in enumerate(images[labels == digit][:30]):
            Image.fromarray(image).save(root / "mine" / name / f"{i}.png")
    torch.manual_seed(0)
    save_file(create_model("resnet18").state_dict(), str(root / "r18_1000.safetensors"))
    return root


def cli(work, *args):
    r = run_cli(*args, cwd=work)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def header(path) -> dict:
    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["edgecnn"])


def test_fine_tune_convert_distill_export_bench_pipeline_through_model_files(work):
    tuned = work / "tuned.safetensors"
    r = cli(
        work,
        *("train", "resnet18", "--weights", "r18_1000.safetensors", "--data", "mine"),
        *("--input-size", "32", "--epochs", "2", "--batch-size", "16", "--freeze-epochs", "1"),
        *("--backbone-lr-scale", "0.5", "-o", tuned.name, "--json"),
    )
    trained = json.loads(r.stdout)
    top1, test_set = trained["test_top1"], trained["test_set"]
    assert test_set == f"18 images from {work / 'mine'} (test: seeded 20% split, seed 0)"
    assert trained["class_names"] == list(CLASSES) and trained["best_epoch"] in (1, 2)
    head = header(tuned)
    assert (head["model"], head["num_classes"], head["input_size"]) == ("resnet18", 3, [32, 32])
    assert head["class_names"] == list(CLASSES) and head["data"]["test_images"] == 18
    assert len(head["mean"]) == len(head["std"]) == 3 and head["transforms"] == []

    # convert and distill take the files alone: classes, size and data come from the headers
    cli(work, "convert", tuned.name, "--separable", "-o", "student.safetensors")
    assert header(work / "student.safetensors")["class_names"] == list(CLASSES)
    r = cli(
        work, "distill", tuned.name, "student.safetensors", "--epochs", "1", "--batch-size", "16", "--json"
    )
    distilled = json.loads(r.stdout)
    assert distilled["teacher_test_top1"] == top1 and distilled["test_set"] == test_set
    student = work / "student.distilled.safetensors"
    assert header(student)["trained"]["test_top1"] == distilled["student_test_top1"]

    cli(work, "export", student.name, "--target", "onnx", "-o", "out")
    (manifest,) = (work / "out").glob("*.onnx.json")
    assert json.loads(manifest.read_text())["output"]["class_names"] == list(CLASSES)

    # bench scores a model file on its own test split: the same images, the same top-1
    r = cli(work, "bench", tuned.name, student.name, "-r", "torch,onnxruntime", *FAST, "--json")
    rows = json.loads(r.stdout)["rows"]
    assert {row["accuracy"]["images"] for row in rows} == {18}
    by = {(row["variant"].split()[0], row["runtime"]): row["accuracy"]["top1"] for row in rows}
    assert by[("tuned", "torch")] == top1 and by[("tuned", "onnxruntime")] == top1
    assert by[("student.distilled", "torch")] == distilled["student_test_top1"]

    r = cli(
        work,
        *("pipeline", tuned.name, "-r", "torch", "--no-int8", "--distill-epochs", "1", "-o", "pipe"),
        *("--batch-size", "16"),
        *FAST[:3],
    )
    said = re.search(r"reference test top-1 ([\d.]+)% on (.*)", r.stderr)
    assert said and float(said[1]) == round(top1, 2) and said[2].strip() == test_set
    table = {
        row["variant"].split()[0]: row["accuracy"]["top1"]
        for row in json.loads((work / "pipe/results.json").read_text())["rows"]
    }
    summary = re.search(r"separable: .* top-1 ([\d.]+)% vs the original's ([\d.]+)%", r.stdout)
    assert summary and float(summary[1]) == round(table["resnet18.separable"], 2)
    assert float(summary[2]) == round(table["resnet18.original"], 2)


def test_fine_tuning_loads_the_backbone_also_from_the_imagenet_cache(work, monkeypatch):
    """`--weights imagenet` from a pre-seeded torch hub cache: every tensor but the new 3-class head
    is the checkpoint's."""
    theirs = load_file(str(work / "r18_1000.safetensors"))
    cache = work / "hub" / "checkpoints"
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(theirs, cache / "resnet18-f37072fd.pth")
    monkeypatch.setenv("TORCH_HOME", str(work))
    monkeypatch.setenv("EDGECNN_OFFLINE", "1")
    start = load_model("resnet18", weights="imagenet", num_classes=3, reset_head=True)
    assert start.module.fc.out_features == 3
    assert all(
        torch.equal(v, theirs[k]) for k, v in start.module.state_dict().items() if not k.startswith("fc.")
    )
    with pytest.raises(BadArgumentError, match="fine-tunes them to your classes"):
        create_model("resnet18", weights="imagenet", num_classes=3)
    r = cli(
        work,
        *("train", "resnet18", "--weights", "imagenet", "--data", "mine", "--input-size", "32"),
        *("--epochs", "1", "--batch-size", "16", "-o", "from-imagenet.safetensors"),
    )
    assert "test top-1" in r.stdout and header(work / "from-imagenet.safetensors")["num_classes"] == 3


def test_plain_weights_still_work_with_flags_and_wrong_files_are_named(work):
    tuned = work / "tuned.safetensors"
    if not tuned.is_file():
        pytest.skip("needs the end-to-end test's model file")
    torch.save(load_source(str(tuned)).module.state_dict(), work / "plain.pth")
    args = ("bench", "resnet18", "--weights", "plain.pth", "-r", "onnxruntime", *FAST)
    cli(work, *args, "--num-classes", "3", "--input-size", "32")
    with pytest.raises(WeightsError, match="holds trained resnet18 weights, not resnet34"):
        create_model("resnet34", weights=str(tuned))
    r = run_cli("bench", "plain.pth", cwd=work)
    assert r.returncode != 0 and "MODEL --weights FILE" in r.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h: h.update(class_names=["a", "b"]), "'class_names' must list 3 class names"),
        (
            lambda h: h.update(num_classes=7, class_names=list("abcdefg")),
            "header does not describe its tensors",
        ),
        (lambda h: h["data"].update(seed="x"), "recipe field 'data' field 'seed' must be an integer"),
        (lambda h: h.update(mean=[0.5]), "'mean' must hold 3 numbers"),
    ],
)
def test_a_tampered_model_file_is_a_one_line_error_before_any_work(work, change, message):
    tuned = work / "tuned.safetensors"
    if not tuned.is_file():
        pytest.skip("needs the end-to-end test's model file")
    with safe_open(str(tuned), "pt") as f:
        meta = f.metadata()
    recipe = json.loads(meta["edgecnn"])
    change(recipe)
    save_file(
        load_file(str(tuned)), str(work / "bad.safetensors"), metadata={**meta, "edgecnn": json.dumps(recipe)}
    )
    r = run_cli("bench", "bad.safetensors", "-r", "torch", *FAST, cwd=work)
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_class_mismatches_are_one_line_errors_before_any_work(work, tmp_path):
    tuned = work / "tuned.safetensors"
    if not tuned.is_file():
        pytest.skip("needs the end-to-end test's model file")
    cli(
        work,
        "convert",
        "resnet18",
        "--num-classes",
        "10",
        "--separable",
        "-o",
        str(tmp_path / "ten.safetensors"),
    )
    r = run_cli("distill", tuned.name, str(tmp_path / "ten.safetensors"), cwd=work)
    assert r.returncode != 0 and "the teacher has 3 classes and the student 10" in r.stderr
    r = run_cli(
        "distill", tuned.name, "student.safetensors", "--data", "digits", "-o", "x.safetensors", cwd=work
    )
    assert r.returncode != 0 and "digits has 10 classes and the models 3" in r.stderr
    other = tmp_path / "other"
    for name in ("one", "two", "zero"):
        (other / name).mkdir(parents=True)
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(other / name / "0.png")
    r = run_cli("train", "resnet18", "--data", "mine", "--test-data", str(other), cwd=work)
    assert r.returncode != 0 and "must be the same subfolders" in r.stderr
    r = run_cli("bench", tuned.name, "--data", str(other), "-r", "torch", *FAST, cwd=work)
    assert r.returncode != 0 and "resnet18 was trained on [one, seven, zero]" in r.stderr
