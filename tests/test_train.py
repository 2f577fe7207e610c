"""Training, distillation, DDP, and the pipeline, on the bundled real digits."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _cli import run_cli

from edgecnn.data import Preprocess
from edgecnn.errors import BadArgumentError
from edgecnn.train import DistillOptions, TrainOptions, distill, evaluate_top1, fit
from edgecnn.train.api import load_splits
from edgecnn.train.distillation import recalibrate_bn, reinitialise
from edgecnn.transforms import SwapOptions, convert
from edgecnn.zoo import card_for, load_model

EDGECNN = [sys.executable, "-m", "edgecnn"]
LENET = Preprocess.for_model(card_for("lenet5"))


def run(*args, cwd=None):
    return run_cli(*args, cwd=cwd)


@pytest.fixture(scope="module")
def splits():
    return load_splits("digits", LENET)


def test_fit_learns_checkpoints_and_resumes(tmp_path, splits):
    model = load_model("lenet5").module
    ckpt = tmp_path / "l.ckpt"
    opts = TrainOptions(epochs=1, max_steps=40, lr=0.05, checkpoint=ckpt)
    result = fit(model, splits.train, splits.val, opts)
    assert result.initial_val_top1 < 30 and result.history[0].val_top1 > 60
    assert ckpt.is_file() and result.best_epoch == 1
    state = torch.load(ckpt, weights_only=True)  # loadable without unpickling code
    assert state["epoch"] == 0 and len(state["history"]) == 1
    resumed = fit(
        load_model("lenet5").module,
        splits.train,
        splits.val,
        TrainOptions(epochs=2, max_steps=40, lr=0.05, checkpoint=ckpt, resume=True),
    )
    assert [h.epoch for h in resumed.history] == [1, 2] and resumed.history[1].val_top1 > 60
    # A checkpoint of another model (here: another class count) is a one-line error, not a traceback.
    from edgecnn.errors import WeightsError

    with pytest.raises(WeightsError, match=r"cannot resume from .*l\.ckpt: .*size mismatch") as e:
        fit(
            load_model("lenet5", num_classes=12).module,
            splits.train,
            None,
            TrainOptions(epochs=2, max_steps=2, checkpoint=ckpt, resume=True),
        )
    assert "\n" not in str(e.value)


def test_a_tie_keeps_the_later_epoch_and_patience_still_stops_a_plateau(monkeypatch, splits, caplog):
    """Validation top-1 50, 60, 60, 55, 60 with patience 3: epoch 5 is kept (tied with 2 and 3, and
    trained longest), and training stops there; the weights restored are epoch 5's."""
    from edgecnn.train import loop

    vals = [50.0, 60.0, 60.0, 55.0, 60.0, 70.0]
    model = load_model("lenet5").module

    def epoch(self, e, result, on_step):
        with torch.no_grad():
            next(model.parameters()).fill_(e + 1)  # the weights say which epoch made them
        return loop.EpochLog(e + 1, 1.0, 50.0, vals[e], 0.01, 0.0)

    monkeypatch.setattr(loop._Session, "epoch", epoch)
    with caplog.at_level("INFO", logger="edgecnn"):
        result = fit(model, splits.train, splits.val, TrainOptions(epochs=6, patience=3))
    assert (result.best_epoch, result.best_val_top1, result.stopped_early) == (5, 60.0, True)
    assert len(result.history) == 5 and float(next(model.parameters()).detach().flatten()[0]) == 5.0
    assert "kept epoch 5: val top-1 60.00%" in caplog.text


def test_a_fine_tune_that_only_gets_worse_hands_back_its_starting_weights(
    monkeypatch, lenet_weights, splits, caplog
):
    """Every epoch scrambles a trained LeNet-5 (as a too-high lr did to a ResNet-50 student, 90.9% ->
    17.0%); the validation scores are real, and fit restores the weights it was given."""
    from edgecnn.train import loop

    model = load_model("lenet5", weights=str(lenet_weights)).module
    start = {k: v.clone() for k, v in model.state_dict().items()}

    def epoch(self, e, result, on_step):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * p.std())
        return loop.EpochLog(e + 1, 1.0, 50.0, evaluate_top1(model, splits.val), 0.01, 0.0)

    monkeypatch.setattr(loop._Session, "epoch", epoch)
    with caplog.at_level("WARNING", logger="edgecnn"):
        result = fit(model, splits.train, splits.val, TrainOptions(epochs=2))
    assert result.initial_val_top1 > 85 and max(h.val_top1 for h in result.history) < result.initial_val_top1
    assert (result.best_epoch, result.best_val_top1) == (0, result.initial_val_top1)
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())
    assert evaluate_top1(model, splits.val) == result.initial_val_top1
    assert "no epoch beat the starting weights" in caplog.text and result.kept.startswith("the starting")


def test_resume_without_a_checkpoint_says_so(tmp_path, splits, caplog):
    opts = TrainOptions(epochs=1, max_steps=2, checkpoint=tmp_path / "none.ckpt", resume=True)
    with caplog.at_level("WARNING", logger="edgecnn"):
        result = fit(load_model("lenet5").module, splits.train, None, opts)
    assert "no checkpoint at" in caplog.text and "training from the start" in caplog.text
    assert [h.epoch for h in result.history] == [1]


def test_early_stop_restores_the_best_weights(splits, monkeypatch):
    scores = iter([10.0, 80.0, 70.0, 60.0, 50.0])
    monkeypatch.setattr("edgecnn.train.loop.evaluate_top1", lambda *a, **k: next(scores))
    result = fit(
        load_model("lenet5").module, splits.train, splits.val, TrainOptions(epochs=5, max_steps=3, patience=2)
    )
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1


def test_recalibrating_bn_rescues_a_truncated_swap(lenet_weights, splits):
    # ResNet-style models are where BN statistics matter; lenet5 has none, so use a tiny convnet here
    ref = load_model("resnet18", num_classes=10, in_chans=1)
    student = convert(
        ref, fold_bn=False, separable=SwapOptions(rank=2).validate("separable"), input_size=(32, 32)
    )
    bn = next(m for m in student.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_var.clone()
    assert recalibrate_bn(student.model, splits.train, batches=3, batch_size=16) == 48
    assert not torch.allclose(bn.running_var, before) and not student.model.training


def test_distillation_recovers_a_separable_student(lenet_weights, splits):
    teacher = load_model("lenet5", weights=str(lenet_weights))
    teacher_top1 = evaluate_top1(teacher.module, splits.test)
    student = convert(teacher, fold_bn=False, separable=SwapOptions(rank=1).validate("separable"))
    assert [s["name"] for s in student.recipe["transforms"]] == ["separable"]
    opts = TrainOptions(epochs=1, max_steps=40, lr=0.02, feature_steps=20, eval_every=20)
    distilled = distill(teacher, student, "digits", DistillOptions(train=opts))
    result, top1 = distilled.training, distilled.student_test_top1
    assert [s for s, _ in result.curve] == [0, 20, 40]
    assert top1 > 80 and top1 > result.initial_val_top1 and teacher_top1 - top1 < 10


def test_random_init_baseline_differs_from_svd_init(lenet_weights):
    teacher = load_model("lenet5", weights=str(lenet_weights))
    student = convert(teacher, fold_bn=False, separable=SwapOptions(rank=2).validate("separable"))
    w = next(p for n, p in student.model.named_parameters() if "weight" in n).clone()
    reinitialise(student.model, seed=3)
    assert not torch.equal(w, next(p for n, p in student.model.named_parameters() if "weight" in n))


def test_teacher_and_student_class_counts_must_match(lenet_weights, splits):
    teacher = load_model("lenet5", weights=str(lenet_weights))
    student = load_model("lenet5", num_classes=5).module
    with pytest.raises(BadArgumentError, match="teacher has 10 classes and student 5"):
        fit(student, splits.train, None, TrainOptions(epochs=1, max_steps=1), teacher=teacher.module)


def test_ddp_runs_with_two_cpu_processes(tmp_path):
    worker = Path(__file__).with_name("_ddp_worker.py")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(worker),
        str(tmp_path),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = (torch.load(tmp_path / f"rank{i}.pt", weights_only=True) for i in (0, 1))
    assert a["world"] == b["world"] == 2
    for k in a["state"]:  # DDP all-reduces gradients: both replicas hold the same weights
        assert torch.equal(a["state"][k], b["state"][k]), k
    torch.manual_seed(0)
    init = load_model("lenet5").module.state_dict()
    first = next(iter(init))
    assert not torch.equal(init[first], a["state"][first])  # and they trained


def test_train_and_distill_cli(tmp_path, lenet_weights):
    out = tmp_path / "l.safetensors"
    r = run("train", "lenet5", "--epochs", "1", "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["test_top1"] > 70 and summary["num_classes"] == 10 and out.is_file()
    assert "random weights" not in r.stderr and "near chance" not in r.stderr  # training starts so
    assert [p.name for p in tmp_path.iterdir()] == ["l.safetensors"]  # the spent checkpoint is gone
    r = run("train", "lenet5", "--epochs", "1", "-o", str(out))
    assert r.returncode == 2 and "--force" in r.stderr
    conv = tmp_path / "sep.safetensors"
    r = run(
        "convert",
        "lenet5",
        "--weights",
        str(lenet_weights),
        "--no-fold-bn",
        "--separable",
        "--rank",
        "2",
        "-o",
        str(conv),
    )
    assert r.returncode == 0, r.stderr
    r = run(
        "distill", "lenet5", str(conv), "--teacher-weights", str(lenet_weights), "--epochs", "1", "--json"
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["student_test_top1"] > 70 and Path(d["output"]).is_file()
    r = run("export", d["output"], "-o", str(tmp_path / "x"))
    assert r.returncode == 0, r.stderr


def test_training_that_learns_nothing_says_so_and_names_the_fix(tmp_path):
    """Labels that noise images cannot predict: the saved model is at chance, and the run warns."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(5):
        (tmp_path / "noise" / f"c{c}").mkdir(parents=True)
        for k in range(20):
            image = rng.integers(0, 255, (32, 32), dtype=np.uint8)
            Image.fromarray(image).save(tmp_path / "noise" / f"c{c}" / f"{k}.png")
    args = (
        "train",
        "lenet5",
        "--data",
        tmp_path / "noise",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "-o",
        tmp_path / "m.safetensors",
    )
    r = run(*args)
    assert r.returncode == 0, r.stderr  # saved, as asked
    warning = " ".join(r.stderr.split())
    assert "is near chance (20.00% for 5 classes)" in warning and "try a lower --lr than 0.05" in warning


def test_the_at_chance_warning_fires_near_chance_or_on_a_loss_above_guessing():
    from types import SimpleNamespace

    from edgecnn.train.api import warn_if_untrained

    def result(loss):
        return SimpleNamespace(history=[SimpleNamespace(train_loss=loss)])

    opts = TrainOptions(lr=0.05)
    assert warn_if_untrained(95.0, 5, result(0.2), opts, fine_tuning=True) is None
    tuned = warn_if_untrained(29.0, 5, result(1.0), opts, fine_tuning=True)
    assert "near chance (20.00% for 5 classes)" in tuned and "try --lr 0.005" in tuned
    stuck = warn_if_untrained(60.0, 10, result(2.5), opts, fine_tuning=False)
    assert "above ln(10) = 2.303" in stuck and "more --epochs" in stuck


def test_training_data_errors(tmp_path):
    import numpy as np
    from PIL import Image

    (tmp_path / "one" / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "one" / "a" / "x.png")
    r = run("train", "lenet5", "--data", str(tmp_path / "one"), "-o", str(tmp_path / "o.safetensors"))
    assert r.returncode == 2 and "at least 2" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "empty").mkdir()
    r = run("train", "lenet5", "--data", str(tmp_path / "empty"), "-o", str(tmp_path / "o.safetensors"))
    assert r.returncode == 2 and "no images" in r.stderr


def test_pipeline_end_to_end(tmp_path, monkeypatch):
    from edgecnn.pipeline import PipelineOptions, run_pipeline

    monkeypatch.setenv("EDGECNN_CACHE", str(tmp_path / "cache"))
    opts = PipelineOptions(
        epochs=1,
        distill_epochs=1,
        rank=2,
        runtimes=("torch", "onnxruntime"),
        seconds=0.1,
        memory=False,
        out_dir=tmp_path / "p",
    )
    import edgecnn.transforms.model_file as model_file

    read = []
    real_read = model_file.load_model_file
    monkeypatch.setattr(
        model_file, "load_model_file", lambda path, **kw: read.append(path) or real_read(path, **kw)
    )
    result = run_pipeline("lenet5", opts)
    # bench measured the Models the pipeline holds: no variant was read back from its file
    assert not {str(v.path) for v in result.variants.values()} & {str(p) for p in read}
    variants = {(r.variant, r.runtime): r for r in result.run.rows}
    assert set(variants) == {
        ("lenet5.original fp32", "torch"),
        ("lenet5.original fp32", "onnxruntime"),
        ("lenet5.original int8u8", "onnxruntime"),
        ("lenet5.separable fp32", "torch"),
        ("lenet5.separable fp32", "onnxruntime"),
        ("lenet5.separable int8u8", "onnxruntime"),
    }
    for row in result.run.rows:
        assert not row.error, row.error
        assert row.accuracy.images == 1000 and row.accuracy.top1 > 60
    sep = result.variants["separable"]
    assert sep.mac_reduction > 1.2 and sep.test_top1 > 60 and sep.table_top1 > 60
    saved = json.loads(result.results_json.read_text())["settings"]["pipeline"]["variants"]
    assert saved["separable"]["path"] == sep.path and saved["separable"]["test_top1"] == sep.test_top1
    assert set(saved) == {"original", "separable"} and "runtime" not in saved["separable"]
    assert (
        result.plot.is_file()
        and result.results_json.is_file()
        and "| lenet5 |" in result.table_md.read_text()
    )
    assert list(
        (tmp_path / "cache" / "reference").glob("lenet5-digits-*.safetensors")
    )  # cached for next time


def test_ddp_picks_its_backend_by_where_the_model_runs(monkeypatch):
    """gloo for a CPU model even on a machine with CUDA (nccl cannot move CPU tensors); nccl for a
    model on CUDA, each rank on its LOCAL_RANK's GPU."""
    import torch.distributed as dist

    from edgecnn.train import ddp

    seen = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: seen.append(f"cuda:{i}"))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: seen.append(backend))
    ddp.distributed("cpu")
    ddp.distributed("cuda")
    assert seen == ["gloo", "cuda:1", "nccl"]


def test_fine_tuning_freezes_the_backbone_first_and_trains_it_slower(splits):
    """--freeze-epochs: the first epoch moves the new head only; then the backbone trains, at
    --backbone-lr-scale of the head's learning rate."""
    from edgecnn.data.dataset import Subset
    from edgecnn.zoo.weights import classifier_heads

    model = load_model("lenet5").module
    head = tuple(classifier_heads(model, 10))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    opts = TrainOptions(epochs=2, max_steps=3, lr=0.05, head=head, freeze_epochs=1, backbone_lr_scale=0.1)
    fit(
        model,
        Subset(splits.train, range(256), "few"),
        None,
        opts,
        on_epoch=lambda e: seen.append({k: v.clone() for k, v in model.state_dict().items()}),
    )
    moved = [{k for k in start if not torch.equal(start[k], s[k])} for s in seen]
    in_head = {k for k in start if k.startswith(tuple(f"{h}." for h in head))}
    assert moved[0] and moved[0] <= in_head  # epoch 1: the head alone
    assert moved[1] - in_head  # epoch 2: the backbone too
    assert all(p.requires_grad for p in model.parameters())  # nothing left frozen
    for bad, message in (
        (dict(freeze_epochs=2), "leaves no epoch"),
        (dict(head=(), freeze_epochs=1), "go with pretrained --weights"),
        (dict(backbone_lr_scale=0.0), "--backbone-lr-scale in"),
    ):
        with pytest.raises(BadArgumentError, match=message):
            TrainOptions(**{**dict(epochs=2, head=head), **bad}).validate()


def test_device_choice_and_data_workers(tmp_path, splits):
    """--device auto trains on CUDA when torch sees a GPU, else the CPU; asking for CUDA or --amp
    without one is a one-line error before any work; --workers decode in other processes."""
    from edgecnn.train.options import resolve_device

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    out = tmp_path / "l.safetensors"
    if not torch.cuda.is_available():
        for flags, message in ((("--device", "cuda"), "sees no CUDA device"), (("--amp",), "--amp is CUDA")):
            r = run("train", "lenet5", "--epochs", "1", *flags, "-o", str(out))
            assert r.returncode in (1, 2) and message in r.stderr and not out.exists(), r.stderr
    from edgecnn.data.dataset import Subset

    model = load_model("lenet5").module
    opts = TrainOptions(epochs=1, max_steps=20, lr=0.05, workers=2, device="auto")
    result = fit(model, Subset(splits.train, range(1280), "few"), Subset(splits.val, range(200), "v"), opts)
    assert result.history[0].val_top1 > 40  # it learned from batches decoded by two worker processes


@pytest.mark.parametrize(("weights", "lr", "batch"), [(None, 0.05, 64), ("ckpt.pth", 0.01, 16)])
def test_fine_tuning_weights_defaults_to_its_own_lr_and_batch(tmp_path, weights, lr, batch):
    """benchmarks/finetune_lr.py: 60 images a class fine-tune to 92% at batch 16, lr 0.01, and at
    most 81% at batch 64 (too few steps); training from scratch keeps 64 and 0.05."""
    import inspect

    from edgecnn.cli.train import _train_options, train

    params = {k: v.default for k, v in inspect.signature(train).parameters.items()}
    params.update(model="resnet18", weights=weights, output=tmp_path / "m.safetensors")
    _, opts, _ = _train_options(params)
    assert (opts.lr, opts.batch_size) == (lr, batch)
    params.update(lr=0.003, batch_size=8)  # what the user gives wins
    assert (_train_options(params)[1].lr, _train_options(params)[1].batch_size) == (0.003, 8)
