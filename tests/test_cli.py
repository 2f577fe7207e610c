"""The `edgecnn` command as a user runs it: exit codes and output (in this process, see _cli.py),
and import hygiene and the entry point in processes of their own."""

import json
import subprocess
import sys

import pytest
import torch
from _cli import run_cli

EDGECNN = [sys.executable, "-m", "edgecnn"]


def run(*args, **kw):
    return run_cli(*args, **kw)


def test_help_imports_no_heavy_backend():
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom edgecnn.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(app, ['zoo'])\nassert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(app, ['inspect', 'resnet50'])\nassert 'conv1' in r.output, r.output\n"
        "names = ('torch', 'torchvision', 'onnxruntime', 'openvino', 'tensorrt')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_version():
    # the real entry point, `python -m edgecnn`, in a process of its own
    r = subprocess.run([*EDGECNN, "--version"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.startswith("edgecnn ")


def test_zoo_json_lists_every_model():
    r = run("zoo", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert len(rows) == 31
    assert rows["resnet50"]["params"] == 25_557_032 and rows["resnet50"]["family"] == "resnet"
    assert rows["unet"]["task"] == "segmentation"


def test_zoo_table_and_pattern():
    r = run("zoo", "vgg*")
    assert r.returncode == 0
    assert "vgg16_bn" in r.stdout and "resnet" not in r.stdout


def test_inspect_vgg16_json():
    r = run("inspect", "vgg16", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    convs = [layer["weight_params"] for layer in d["layers"] if layer["type"] == "Conv2d"]
    assert convs[:8] == [1_728, 36_864, 73_728, 147_456, 294_912, 589_824, 589_824, 1_179_648]
    assert d["params"] == 138_357_544 and d["activations"] == 15_237_608
    assert "multiply" in d["units"]["macs"]


def test_inspect_table_shows_course_shapes():
    r = run("inspect", "alexnet2012")
    assert r.returncode == 0, r.stderr
    for shape in ("55x55x96", "27x27x96", "13x13x384", "6x6x256"):
        assert shape in r.stdout
    assert "62,378,344" in r.stdout


def test_inspect_input_size_and_model_args():
    r = run("inspect", "unet", "--input-size", "64", "-a", "padding=same", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["layers"][-1]["output_shape"] == [1, 2, 64, 64]


def test_input_size_is_one_token_square_or_h_w():
    """`--input-size 40` is 40x40 and never takes the option after it; `40,48` (or 40x48) is H,W."""
    for size, want in (("40", [40, 40]), ("40,48", [40, 48]), ("40x48", [40, 48])):
        r = run("inspect", "resnet18", "--input-size", size, "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["layers"][-1]["output_shape"] == [1, 1000]
        assert json.loads(r.stdout)["input_shape"][-2:] == want
    for bad in ("6a", "0", "1,2,3"):
        r = run("inspect", "resnet18", "--input-size", bad)
        assert r.returncode == 2 and "give N for N x N, or H,W" in r.stderr, r.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("inspect", "resnet5O"), "did you mean: resnet50"),
        (("inspect", "alexnet2012", "--input-size", "8"), "does not fit alexnet2012"),
        (("inspect", "unet", "-a", "padding=round"), "padding must be 'valid' or 'same'"),
        (("inspect", "unet", "-a", "nonsense"), "expected KEY=VALUE"),
        (("inspect", "lenet5", "--weights", "missing.pth"), "weights file not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle):
    r = run(*args)
    assert r.returncode == 2
    assert needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_bad_weights_files_are_one_line_errors(tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    wrong = tmp_path / "wrong.pth"
    from edgecnn.zoo import create_model

    torch.save(create_model("lenet5", num_classes=3).state_dict(), wrong)
    pickled = tmp_path / "pickled.pth"
    torch.save(create_model("lenet5"), pickled)
    for path, needle in ((corrupt, "not a readable"), (wrong, "classifier.5.weight"), (pickled, "refusing")):
        r = run("inspect", "lenet5", "--weights", str(path))
        assert r.returncode == 2, r.stderr
        assert needle in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_inspect_with_weights_file(tmp_path):
    from edgecnn.zoo import create_model

    path = tmp_path / "lenet.pth"
    torch.save(create_model("lenet5").state_dict(), path)
    r = run("inspect", "lenet5", "--weights", str(path), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["params"] == 61_706


def test_progress_off_a_terminal_is_a_line_per_stage_and_never_silent_long(capsys):
    """A log (no terminal) gets each new stage once, a stage's last count, and within a long stage a
    count line every EVERY_S seconds: no bar that prints nothing until it ends."""
    from edgecnn.cli import _progress

    now = [0.0]
    rep = _progress.Reporter("training lenet5", clock=lambda: now[0])
    rep.milestone("reference test top-1 93.30%")  # a line that stays, once
    rep.step("reference test top-1 93.30%")
    rep.stage("profiling probe models", 1, 10)
    for done in range(2, 10):
        now[0] += 1.0
        rep.stage("profiling probe models", done, 10)  # 8 s in: one more line at 5 s
    rep.stage("profiling probe models", 10, 10)
    now[0] += 1.0
    rep.on_step(0, 5, 63, 0.5)
    rep.count(6, 63)  # within EVERY_S of the last line: silent
    now[0] += _progress.EVERY_S
    rep.count(40, 63)
    rep.stage("exporting the student", 0, 1)  # a one-step stage: no "(0/1)", and said once
    now[0] += 2 * _progress.EVERY_S
    rep.stage("exporting the student", 1, 1)
    rep.step("measuring 1/8: resnet18 fp32 onnxruntime batch 1")
    now[0] += 2 * _progress.EVERY_S
    rep.tick(1, 8)  # a slow row done: its step line said 1/8 already, so no second line
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "reference test top-1 93.30%",
        "profiling probe models (1/10)",
        "profiling probe models (6/10)",
        "profiling probe models (10/10)",
        "training lenet5 epoch 1 (5/63) loss 0.500",
        "training lenet5 epoch 1 (40/63)",
        "exporting the student",
        "measuring 1/8: resnet18 fp32 onnxruntime batch 1",
    ]
