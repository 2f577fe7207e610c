"""Export end to end: real artifacts, run in their runtimes, compared with PyTorch within tolerances."""

import dataclasses
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from _cli import run_cli

from edgecnn.export import ExportOptions, export, read_manifest
from edgecnn.runtime import PRECISIONS, Tolerance
from edgecnn.zoo import load_model

EDGECNN = [sys.executable, "-m", "edgecnn"]
HAS_OPENVINO = __import__("importlib").util.find_spec("openvino") is not None
HAS_TRT = __import__("importlib").util.find_spec("tensorrt") is not None and torch.cuda.is_available()
openvino = pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed")
# Targets of the tests about ONNX that also check OpenVINO where it is installed.
ONNX_AND_OPENVINO = ("openvino", "onnx") if HAS_OPENVINO else ("onnx",)


def run(*args, cwd=None):
    return run_cli(*args, cwd=cwd)


def _torch_logits(name, x, **kw):
    model = load_model(name, **kw).module
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@openvino
def test_fp32_onnx_and_openvino_match_pytorch_and_write_manifests(tmp_path):
    result = export(
        "resnet18", ExportOptions(targets=("onnx", "openvino"), out_dir=tmp_path, input_size=(64, 64))
    )
    assert result.ok, [t.error for t in result.targets]
    onnx_t, ov_t = result.targets
    assert Path(onnx_t.path).name == "resnet18.64x64.onnx" and Path(ov_t.path).suffix == ".xml"
    assert Path(ov_t.path).with_suffix(".bin").is_file()
    for t in result.targets:
        (p,) = t.parity
        assert p.passed and p.max_abs < 1e-3 and p.max_rel < 1e-4 and p.images == 8
        manifest = json.loads(Path(t.manifest).read_text())
        assert manifest["format"] == "edgecnn-export/1" and manifest["precision"] == "fp32"
        assert manifest["input"]["shape"] == [1, 3, 64, 64] and manifest["input"]["mean"][0] == 0.485
        assert manifest["onnx"]["opset"] == 17 and manifest["onnx"]["exporter"] == "torchscript"
        assert (
            torch.__version__.startswith(manifest["versions"]["torch"])
            and manifest["weights"]["source"] == "random"
        )
        assert manifest["file"]["size_bytes"] == t.size_bytes and len(manifest["file"]["sha256"]) == 64
        assert manifest["parity"][0]["max_abs"] == p.max_abs
    onnx.checker.check_model(onnx_t.path)
    # independent check: the published file reproduces PyTorch on a fresh input
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    sess = ort.InferenceSession(onnx_t.path, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"] and [o.name for o in sess.get_outputs()] == [
        "logits"
    ]
    torch.manual_seed(0)
    np.testing.assert_allclose(
        sess.run(None, {"input": x})[0], _torch_logits_seeded("resnet18", x), rtol=1e-4, atol=1e-4
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "work folder left behind"


def _torch_logits_seeded(name, x):
    torch.manual_seed(0)  # the same seed as the export above, so the same random weights
    return _torch_logits(name, x)


def test_dynamic_batch_runs_any_batch_size(tmp_path):
    result = export(
        "mobilenet_v3_small", ExportOptions(out_dir=tmp_path, dynamic_batch=True, input_size=(96, 96))
    )
    assert result.ok
    sess = ort.InferenceSession(result.targets[0].path, providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape[0] == "batch"
    for n in (1, 3):
        assert sess.run(None, {"input": np.zeros((n, 3, 96, 96), np.float32)})[0].shape == (n, 1000)


def test_static_batch_and_fp16(tmp_path):
    result = export(
        "resnet18", ExportOptions(out_dir=tmp_path, precision="fp16", batch=2, input_size=(64, 64))
    )
    (t,) = result.targets
    assert t.ok and t.path.endswith("resnet18.64x64.b2.fp16.onnx")
    assert t.parity[0].max_rel < 2e-2 and t.parity[0].images == 8
    model = onnx.load(t.path)
    assert {i.data_type for i in model.graph.initializer} >= {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 I/O kept
    fp32 = export("resnet18", ExportOptions(out_dir=tmp_path, batch=2, input_size=(64, 64))).targets[0]
    assert 0.45 < t.size_bytes / fp32.size_bytes < 0.55


@openvino
def test_int8_qdq_on_trained_lenet_agrees_in_onnxruntime_and_openvino(tmp_path, lenet_weights):
    opts = ExportOptions(targets=("onnx", "openvino"), out_dir=tmp_path, precision="int8", calib="digits")
    result = export("lenet5", opts, weights=str(lenet_weights))
    assert result.ok, [t.error for t in result.targets]
    q = result.quantization
    assert q["calibration_images"] == 100 and q["calibration_method"] == "minmax"
    # Each target gets its runtime's fast activation scheme by default, named in file and manifest.
    onnx_t, ov_t = result.targets
    assert onnx_t.path.endswith("lenet5.int8u8.onnx") and ov_t.path.endswith("lenet5.int8.xml")
    assert onnx_t.quantization["activations"].startswith("uint8")
    assert ov_t.quantization["activations"].startswith("int8 symmetric")
    assert read_manifest(ov_t.path)["quantization"]["activations"].startswith("int8 symmetric")
    for t in result.targets:
        _, images = t.parity
        assert images.inputs == "images:64" and images.reference_classes == 10
        assert images.top1_agreement >= 0.95 and images.max_rel < 0.1
    graph = onnx.load(result.targets[0].path).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # per-channel weight scales on the convs
    scales = {i.name: i for i in graph.initializer if "scale" in i.name}
    assert any(len(i.dims) == 1 and i.dims[0] > 1 for i in scales.values())


def test_int8_is_about_four_times_smaller(tmp_path):
    # size only: a random-weight ResNet's near-tied logits make agreement meaningless (see the lenet test)
    opts = dict(out_dir=tmp_path, input_size=(64, 64), verify=False)
    fp32 = export("resnet18", ExportOptions(**opts)).targets[0]
    int8 = export("resnet18", ExportOptions(**opts, precision="int8", calib="digits", calib_size=16)).targets[
        0
    ]
    assert int8.path.endswith(".int8u8.onnx") and 3.6 < fp32.size_bytes / int8.size_bytes < 4.2
    assert fp32.status == "not verified" and not fp32.parity


def test_int8_calibrates_on_an_image_folder_and_checks_held_out_images(tmp_path, lenet_weights):
    from PIL import Image

    from edgecnn.data import Preprocess, open_dataset
    from edgecnn.zoo import card_for

    digits = open_dataset("digits", Preprocess.for_model(card_for("lenet5")), split="test")
    for i in range(40):
        folder = tmp_path / "imgs" / str(digits.labels[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(digits.images[i]).save(folder / f"{i}.png")
    (tmp_path / "imgs" / "3" / "corrupt.png").write_bytes(b"\x89PNG broken")
    opts = ExportOptions(
        out_dir=tmp_path / "out", precision="int8", calib=str(tmp_path / "imgs"), calib_size=24
    )
    result = export("lenet5", opts, weights=str(lenet_weights))
    (t,) = result.targets
    assert t.ok, t.error
    images = t.parity[1]
    assert images.images in (16, 17) and images.top1_agreement >= 0.9
    assert (
        result.quantization["calibration_images"] + result.quantization.get("calibration_images_skipped", 0)
        == 24
    )


def test_converted_model_exports_and_matches(tmp_path):
    from edgecnn.transforms import SwapOptions, convert, save_converted

    converted = convert(
        load_model("resnet18"), separable=SwapOptions(rank=2).validate("separable"), input_size=(64, 64)
    )
    path = save_converted(converted, tmp_path / "r18.converted.safetensors")
    result = export(str(path), ExportOptions(out_dir=tmp_path / "out"))
    (t,) = result.targets
    assert t.ok and Path(t.path).name == "r18.converted.onnx"
    manifest = json.loads(Path(t.manifest).read_text())
    assert manifest["transforms"] == ["fold_bn", "separable"] and manifest["weights"]["source"] == "converted"
    ops = [n for n in onnx.load(t.path).graph.node if n.op_type == "Conv"]
    assert any(a.name == "group" and a.i > 1 for n in ops for a in n.attribute)  # depthwise convs exported


def test_conversion_flags_on_export(tmp_path):
    result = export(
        "resnet18", ExportOptions(out_dir=tmp_path, input_size=(64, 64)), convert={"fold_bn": True}
    )
    (t,) = result.targets
    assert t.ok and re.fullmatch(r"resnet18\.fold_bn-[0-9a-f]{6}\.64x64\.onnx", Path(t.path).name)


def test_names_tell_apart_what_differs_so_examples_run_in_order(tmp_path):
    """Ranks (a digest of the export-time transforms' recipes) and a non-default calibration method
    are in the name: rank 2 then rank 3, or minmax then entropy, make two files, not a refusal."""
    from edgecnn.transforms import SwapOptions

    names = set()
    for rank in (2, 3):
        convert = {"fold_bn": False, "separable": SwapOptions(rank=rank)}
        (t,) = export("lenet5", ExportOptions(out_dir=tmp_path, verify=False), convert=convert).targets
        assert t.ok and Path(t.path).name.startswith("lenet5.separable-")
        names.add(Path(t.path).name)
    assert len(names) == 2
    for method in ("minmax", "entropy"):
        opts = ExportOptions(
            out_dir=tmp_path,
            precision="int8",
            calib="digits",
            calib_size=16,
            calib_method=method,
            verify=False,
        )
        (t,) = export("lenet5", opts).targets
        names.add(Path(t.path).name)
    assert {"lenet5.int8u8.onnx", "lenet5.int8u8-entropy.onnx"} <= names


def test_failed_verification_writes_nothing(tmp_path, monkeypatch):
    strict = dataclasses.replace(PRECISIONS["fp32"], tolerance=Tolerance(max_rel=0.0, min_agreement=1.0))
    monkeypatch.setitem(PRECISIONS, "fp32", strict)
    result = export("lenet5", ExportOptions(out_dir=tmp_path))
    (t,) = result.targets
    assert t.status == "verify failed" and "max relative error" in t.error and not result.ok
    assert list(tmp_path.iterdir()) == []


def test_existing_artifact_is_not_overwritten_without_force(tmp_path):
    first = export("lenet5", ExportOptions(out_dir=tmp_path)).targets[0]
    before = Path(first.path).stat().st_mtime_ns
    r = run("export", "lenet5", "-o", str(tmp_path))
    assert r.returncode == 2 and "--force" in r.stderr and "Traceback" not in r.stderr
    assert Path(first.path).stat().st_mtime_ns == before
    r = run("export", "lenet5", "-o", str(tmp_path), "--force")
    assert r.returncode == 0, r.stderr
    assert Path(first.path).stat().st_mtime_ns != before


def test_the_table_keeps_noise_and_real_image_parity_apart_and_states_the_rule(tmp_path, lenet_weights):
    """Each input set in its own columns, `*` on what decided the status, the rule under the table;
    progress goes to stderr as plain lines off a terminal. Random weights: agreement is not gated."""
    args = ("export", "lenet5", "-t", "onnx", "--calib", "digits", "--calib-size", "16", "-o", str(tmp_path))
    r = run(*args, "--weights", str(lenet_weights))
    assert r.returncode == 0, r.stderr
    header = next(line for line in r.stdout.splitlines() if "target" in line)
    assert all(c in header for c in ("noise err", "image err", "agree"))
    row = next(line for line in r.stdout.splitlines() if "lenet5.onnx" in line)
    cells = [c.strip() for c in row.split("│")[6:9]]
    assert all(c.endswith("*") for c in cells) and float(cells[2].rstrip("*")) >= 0.99
    assert "parity against PyTorch on seeded:8 and images:64" in r.stdout
    assert "fp32 ok when noise err <= 0.0001, image err <= 0.0001, agree >= 0.99" in r.stdout
    assert "lenet5: onnx: verifying against PyTorch" in r.stderr
    r = run(*args, "--force")  # random weights: near-tied logits make agreement a coin flip
    row = next(line for line in r.stdout.splitlines() if "lenet5.onnx" in line)
    assert r.returncode == 0 and not row.split("│")[8].strip().endswith("*")
    assert "fp32 ok when noise err <= 0.0001, image err <= 0.0001\n" in r.stdout


# Runs `edgecnn export` with os.replace patched to send `signal` to itself right after the n-th
# rename into the output folder, or for n = 0 as publishing begins (the verified artifact still in
# the work folder): a deterministic kill at every step of publishing.
KILLER = """
import os, signal, sys
from pathlib import Path
import edgecnn.export.targets as targets
out, n, sig = Path(sys.argv[1]), int(sys.argv[2]), getattr(signal, sys.argv[3])
real_replace, real_publish, seen = os.replace, targets.publish, [0]
def replace(src, dst, *a, **k):
    real_replace(src, dst, *a, **k)
    seen[0] += Path(dst).parent == out and not Path(dst).name.startswith(".")
    if n and seen[0] == n:
        os.kill(os.getpid(), sig)
def publish(*a, **k):
    if n == 0:
        os.kill(os.getpid(), sig)
    return real_publish(*a, **k)
os.replace, targets.publish = replace, publish
from edgecnn.cli import main
sys.argv = ["edgecnn", "export", "lenet5", "-t", sys.argv[4], "-o", str(out)]
main()
"""


def _published_state_is_consistent(out: Path) -> list[str]:
    """Every visible artifact has a manifest whose files and sha256 values match; returns names."""
    from edgecnn.export import check_files
    from edgecnn.export.manifest import manifest_path

    artifacts = [p for p in out.iterdir() if p.suffix in (".onnx", ".xml") and not p.name.startswith(".")]
    for artifact in artifacts:
        assert manifest_path(artifact).is_file(), artifact
        assert check_files(artifact) is None, check_files(artifact)
    return sorted(p.name for p in artifacts)


def test_killing_an_export_at_any_step_leaves_no_artifact_without_its_manifest(tmp_path):
    """SIGKILL inside the work folder and after each rename of publishing: every visible artifact has
    a manifest that matches it; each run re-runs the command the killed one left unfinished (no
    --force: it replaces what that run published), and the last one completes it and sweeps the
    work folders the killed ones left."""
    out = tmp_path / "out"
    targets = ",".join(ONNX_AND_OPENVINO)
    renames = 2 * len(ONNX_AND_OPENVINO) + HAS_OPENVINO  # manifest + file each, + OpenVINO's .bin
    # a polite stop (SIGTERM) removes its own work folder at once; it runs beside the killed ones
    polite = tmp_path / "polite"
    stopped = subprocess.Popen([sys.executable, "-c", KILLER, str(polite), "0", "SIGTERM", targets])
    seen = []
    for n in range(renames):
        r = subprocess.run([sys.executable, "-c", KILLER, str(out), str(n), "SIGKILL", targets], timeout=300)
        assert r.returncode == -signal.SIGKILL
        seen.append(_published_state_is_consistent(out))
    assert seen[0] == [] and seen[-1]  # nothing at first; the first target published by the end
    assert list(out.glob(".export-*")), "the killed runs left work folders to sweep"
    r = run("export", "lenet5", "-t", targets, "-o", str(out))  # as typed: no --force
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(_published_state_is_consistent(out)) == len(ONNX_AND_OPENVINO)
    r = run("export", "lenet5", "-t", targets, "-o", str(out))  # complete: now it is the user's
    assert r.returncode == 2 and "already exists; pass --force" in r.stderr
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # swept, nothing partial
    assert stopped.wait(timeout=300) != 0 and list(polite.iterdir()) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["lenet5", "--target", "onxx"], "unknown target 'onxx'; did you mean: onnx?"),
        (["lenet5", "--precision", "int4"], "unknown precision 'int4'"),
        (["lenet5", "--precision", "int8"], "--precision int8 needs calibration images"),
        (["resnet18", "--precision", "int8", "--calib", "EMPTY"], "no images in"),
        (["resnet18", "--input-size", "16"], "too small for resnet18 (at least 32x32)"),
        (["alexnet2012", "--input-size", "200"], "fixed-size classifier"),
        (["resnet5O"], "unknown model 'resnet5O'; did you mean"),
        (["lenet5", "--exporter", "jit"], "unknown exporter"),
    ],
)
def test_bad_input_one_line_errors(tmp_path, args, message):
    (tmp_path / "EMPTY").mkdir()
    r = run("export", *args, "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.skipif(HAS_TRT, reason="TensorRT and CUDA are present")
def test_tensorrt_without_tensorrt_or_gpu_fails_cleanly_and_writes_nothing(tmp_path):
    r = run("export", "resnet50", "--target", "onnx,tensorrt", "-o", str(tmp_path / "out"))
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert (len(lines) == 1 and "edgecnn[tensorrt]" in r.stderr) or "CUDA" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT and a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_engine_matches_pytorch(tmp_path, precision, lenet_weights):
    opts = ExportOptions(
        targets=("tensorrt",), out_dir=tmp_path, precision=precision, calib="digits", dynamic_batch=True
    )
    result = export("lenet5", opts, weights=str(lenet_weights))
    (t,) = result.targets
    assert t.ok, t.error
    assert (tmp_path / "tensorrt.timing.cache").is_file()
    assert t.parity[-1].top1_agreement >= 0.95


def test_large_models_keep_weights_in_an_external_data_file(tmp_path, monkeypatch):
    monkeypatch.setattr("edgecnn.export.onnx.EXTERNAL_DATA_BYTES", 1000)  # treat lenet5 as "large"
    result = export("lenet5", ExportOptions(targets=ONNX_AND_OPENVINO[::-1], out_dir=tmp_path))
    assert result.ok, [t.error for t in result.targets]
    onnx_t = result.targets[0]
    data = Path(onnx_t.path + ".data")
    assert data.is_file() and data.stat().st_size > 200_000 and result.onnx["external_data"] == data.name
    assert Path(onnx_t.path).stat().st_size < 50_000 and onnx_t.size_bytes > 200_000
    sess = ort.InferenceSession(onnx_t.path, providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.zeros((1, 1, 32, 32), np.float32)})[0].shape == (1, 10)


def test_dynamo_exporter_on_request(tmp_path):
    pytest.importorskip("onnxscript")
    result = export("lenet5", ExportOptions(out_dir=tmp_path, exporter="dynamo", dynamic_batch=True))
    (t,) = result.targets
    assert t.ok, t.error
    assert json.loads(Path(t.manifest).read_text())["onnx"]["exporter"] == "dynamo"


def test_a_model_file_calibrates_int8_on_the_training_images_it_records(tmp_path, lenet_weights):
    """No --calib: the file's recorded split gives the calibration (training) and check (test) images."""
    from edgecnn.data.digits import CLASSES
    from edgecnn.data.splits import SplitSpec
    from edgecnn.transforms import save_with_recipe
    from edgecnn.transforms.model_file import model_recipe
    from edgecnn.zoo import load_model

    loaded = load_model("lenet5", weights=str(lenet_weights))
    header = model_recipe(loaded, (32, 32), class_names=list(CLASSES), data=SplitSpec("digits").to_dict())
    path = tmp_path / "lenet.safetensors"
    save_with_recipe(loaded.module, header, path)
    r = run(
        "export", str(path), "--precision", "int8", "--calib-size", "16", "-o", str(tmp_path / "x"), "--json"
    )
    assert r.returncode == 0, r.stderr
    (target,) = json.loads(r.stdout)["targets"]
    assert target["status"] == "ok" and target["quantization"]["calibration_images"] == 16
    assert [p["inputs"] for p in target["parity"]] == ["seeded:8", "images:64"]
    assert "calibrating INT8 on 16 images from digits" in r.stderr
