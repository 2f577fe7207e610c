"""Failure classes a hostile user finds: each is one `error:` line, a non-zero exit, no traceback,
and nothing created, replaced or left half-written (directory snapshots compared by sha256)."""

import hashlib
import json
import sys
from pathlib import Path

import pytest
from _cli import run_cli

from edgecnn.plan.latency import CACHE_FORMAT

EDGECNN = [sys.executable, "-m", "edgecnn"]


def run(*args, cwd):
    return run_cli(*args, cwd=cwd)


def cli(*args, cwd, monkeypatch=None):
    return run_cli(*args, cwd=cwd)


def snapshot(root) -> dict:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assert_one_line_error(r, code=2, needle=""):
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    assert r.stderr.count("error:") == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert needle in r.stderr, r.stderr[-2000:]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A LeNet-5 with its convolutions made separable, saved with its recipe header."""
    from edgecnn.transforms import SwapOptions, convert, save_converted
    from edgecnn.zoo import load_model

    path = tmp_path_factory.mktemp("conv") / "lenet5.sep.safetensors"
    save_converted(convert(load_model("lenet5"), separable=SwapOptions(rank=1)), path)
    return path


def _tamper(src, dst, edit):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
    recipe = json.loads(meta["edgecnn"])
    meta["edgecnn"] = edit(recipe) if callable(edit) else edit
    if not isinstance(meta["edgecnn"], str):
        meta["edgecnn"] = json.dumps(meta["edgecnn"])
    save_file(load_file(str(src)), str(dst), metadata=meta)


def _swap_step(recipe):
    return next(s for s in recipe["transforms"] if s["name"] == "separable")


def _set(recipe, key, value):
    recipe[key] = value
    return recipe


def _drop(recipe, key):
    recipe.pop(key)
    return recipe


def _rename_layer(recipe):
    step = _swap_step(recipe)
    step["layers"] = {"features.99": next(iter(step["layers"].values()))}
    return recipe


def _negative_rank(recipe):
    step = _swap_step(recipe)
    step["layers"] = {k: -1 for k in step["layers"]}
    return recipe


TAMPERS = {
    "invalid JSON": ('{"model": "lenet5", ', "recipe header is not valid JSON"),
    "missing num_classes": (lambda r: _drop(r, "num_classes"), "recipe field 'num_classes'"),
    "string class count": (lambda r: _set(r, "num_classes", "10"), "recipe field 'num_classes'"),
    "float class count": (lambda r: _set(r, "num_classes", 2.5), "recipe field 'num_classes'"),
    "unknown model": (lambda r: _set(r, "model", "lenet6"), "recipe field 'model'"),
    "missing transforms": (lambda r: _drop(r, "transforms"), "recipe field 'transforms'"),
    "layer that does not exist": (_rename_layer, "does not fit lenet5"),
    "negative rank": (_negative_rank, "must be a positive integer rank"),
    "bad input size": (lambda r: _set(r, "input_size", [32]), "recipe field 'input_size'"),
    "input size no machine holds": (
        lambda r: _set(r, "input_size", [100000, 100000]),
        "GiB; this machine has",
    ),
    "not an object": ("[1, 2]", "recipe field '(header)'"),
}


@pytest.mark.parametrize("case", list(TAMPERS))
def test_a_tampered_recipe_header_is_one_line_naming_the_field(tmp_path, converted, case, monkeypatch):
    edit, needle = TAMPERS[case]
    bad = tmp_path / "bad.safetensors"
    _tamper(converted, bad, edit)
    before = snapshot(tmp_path)
    commands = [("export", str(bad), "-o", str(tmp_path / "out")), ("bench", str(bad), "-r", "onnxruntime")]
    for args in commands:
        r = cli(*args, cwd=tmp_path, monkeypatch=monkeypatch)
        assert_one_line_error(r, 2, needle)
        assert snapshot(tmp_path) == before, args


def _folder(root, classes=2, per_class=12, size=28):
    """An image folder of random grey squares, one subfolder per class."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(d / f"{i}.png")
    return root


TRAIN = ("train", "lenet5", "--epochs", "1", "--batch-size", "8")


def test_an_unreadable_image_in_training_data_is_skipped(tmp_path):
    data = _folder(tmp_path / "data")
    (data / "class0" / "broken.png").write_bytes(b"")
    r = run(*TRAIN, "--data", str(data), "-o", str(tmp_path / "w.safetensors"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "skipping unreadable image" in r.stderr and "broken.png" in r.stderr
    assert (tmp_path / "w.safetensors").is_file()


@pytest.mark.parametrize(
    "case, needle",
    [
        ("label out of range", "has label 999 but the model has 3 outputs"),
        ("fewer images than a batch", "fewer than one batch of 8"),
        ("unlabelled flat folder", "0 class folder(s) with images"),
    ],
)
def test_training_data_problems_are_one_line_before_any_work(tmp_path, case, needle):
    import numpy as np
    from PIL import Image

    data = tmp_path / "data"
    args = [*TRAIN, "--data", str(data), "-o", str(tmp_path / "out" / "w.safetensors")]
    if case == "fewer images than a batch":
        _folder(data, per_class=3)
    else:
        data.mkdir()
        for i in range(12):
            Image.fromarray(np.full((28, 28), i * 20, dtype=np.uint8)).save(data / f"{i:02d}.png")
        if case == "label out of range":
            (tmp_path / "labels.txt").write_text("\n".join(str(v) for v in [0, 1, 999] * 4) + "\n")
            args += ["--labels", str(tmp_path / "labels.txt")]
    before = snapshot(tmp_path)
    r = run(*args, cwd=tmp_path)
    assert_one_line_error(r, 2, needle)
    assert snapshot(tmp_path) == before and "epoch 1" not in r.stderr


def test_calibration_and_bench_data_problems_are_one_line_before_any_work(tmp_path):
    data = tmp_path / "unreadable"
    (data / "a").mkdir(parents=True)
    (data / "b").mkdir()
    for d in ("a", "b"):
        for i in range(3):
            (data / d / f"{i}.png").write_bytes(b"")
    flat = tmp_path / "flat"
    _folder(tmp_path / "tmp", classes=1, per_class=3).joinpath("class0").rename(flat)
    before = snapshot(tmp_path)
    r = run(
        "export",
        "lenet5",
        "--precision",
        "int8",
        "--calib",
        str(data),
        "-o",
        str(tmp_path / "o"),
        cwd=tmp_path,
    )
    assert_one_line_error(r, 2, "none of the 6 calibration images")
    r = run("bench", "lenet5", "-r", "onnxruntime", "--data", str(flat), cwd=tmp_path)
    assert_one_line_error(r, 2, "has no labels")
    r = run("bench", "lenet5", "-r", "onnxruntime", "--data", str(tmp_path / "missing"), cwd=tmp_path)
    assert_one_line_error(r, 2, "data folder not found")
    assert snapshot(tmp_path) == before


def test_output_location_problems_are_refused_before_any_work(tmp_path, monkeypatch):
    """An output whose folder is a file, or a plot format matplotlib cannot write: one line, before
    any measurement or training, nothing created."""
    from edgecnn.bench.schema import BenchRow, BenchRun, save

    (tmp_path / "afile").write_text("x")
    results = tmp_path / "r.json"
    from edgecnn.bench.latency import LatencyStats

    timed = LatencyStats.from_times([1e-3], batch=1, warmup_s=0.0)
    row = BenchRow("lenet5", "fp32", "onnxruntime", "cpu", "fp32", 1, latency=timed)
    save(BenchRun({"label": "m"}, {}, [row]), results)
    before = snapshot(tmp_path)
    cases = [
        (("train", "lenet5", "-o", str(tmp_path / "afile" / "w.safetensors")), "is not a folder"),
        (("convert", "lenet5", "-o", str(tmp_path / "afile" / "c.safetensors")), "is not a folder"),
        (("export", "lenet5", "-o", str(tmp_path / "afile" / "x")), "is not a folder"),
        (("plot", str(results), "-o", str(tmp_path / "fig.txt")), "plot writes .png, .svg, .pdf files"),
        (
            ("plot", str(results), "-o", "/proc/fig.png"),
            "cannot write into /proc",
        ),  # root's access() says yes
    ]
    for args, needle in cases:
        r = cli(*args, cwd=tmp_path, monkeypatch=monkeypatch)
        assert_one_line_error(r, 2, needle)
        assert snapshot(tmp_path) == before, args


def test_every_file_edgecnn_writes_gets_the_usual_permissions(tmp_path, converted):
    """Atomic writes go through mkstemp (0600); what is published gets 0666 minus the umask, like any
    other file the user makes: .safetensors, manifests and artifacts alike."""
    import os

    from edgecnn.export import ExportOptions, export

    umask = os.umask(0)
    os.umask(umask)
    result = export(str(converted), ExportOptions(out_dir=tmp_path / "x", verify=False))
    files = [converted, Path(result.targets[0].path), Path(result.targets[0].manifest)]
    assert {oct(f.stat().st_mode & 0o777) for f in files} == {oct(0o666 & ~umask)}


def test_every_command_goes_through_the_one_error_handler():
    """The grep-able rule: every registered command is wrapped by `handle_errors`, the one place
    that turns an edgecnn error into one `error:` line and an exit code."""
    from edgecnn.cli import app
    from edgecnn.cli._common import handle_errors

    wrapped = handle_errors(lambda: None).__code__
    for command in app.registered_commands:
        assert command.callback.__code__ is wrapped, command.name


# One invalid invocation per command: each must be one `error:` line with exit 2, no traceback.
INVALID = [
    (("zoo", "nosuch*"), "no zoo model matches 'nosuch*'"),
    (("inspect", "resnet5O"), "unknown model 'resnet5O'"),
    (("convert", "resnet5O"), "unknown model 'resnet5O'"),
    (("export", "lenet5", "-t", "onxx"), "unknown target 'onxx'"),
    (("compress", "lenet5", "--speedup", "0.5"), "--speedup must be > 1"),
    (("bench", "lenet5", "--batch", "0"), "--batch needs positive sizes"),
    (("compare", "missing.json", "missing.json"), "result file not found"),
    (("plot", "missing.json"), "result file not found"),
    (("train", "lenet5", "--data", "missing-folder"), "data folder not found"),
    (("distill", "lenet5", "missing.safetensors", "--teacher-weights", "x.pth"), "not found"),
    (("pipeline", "lenet5", "--data", "missing-folder"), "data folder not found"),
]


@pytest.mark.parametrize("args, needle", INVALID, ids=[a[0] for a, _ in INVALID])
def test_invalid_arguments_to_any_command_are_one_line(tmp_path, monkeypatch, args, needle):
    r = cli(*args, cwd=tmp_path, monkeypatch=monkeypatch)
    assert_one_line_error(r, 2, needle)
    assert list(tmp_path.iterdir()) == []


def test_the_invalid_table_covers_every_command():
    from edgecnn.cli import app

    assert {c.name for c in app.registered_commands} == {args[0] for args, _ in INVALID}


def test_an_artifact_that_does_not_match_its_manifest_is_never_run_or_reused(tmp_path, monkeypatch):
    import torch

    from edgecnn.bench import BenchOptions, bench
    from edgecnn.export import ExportOptions, check_files, export
    from edgecnn.zoo import load_model

    weights = tmp_path / "w.pth"
    torch.save(load_model("lenet5").module.state_dict(), weights)
    out = tmp_path / "x"
    path = Path(
        export("lenet5", ExportOptions(out_dir=out, verify=False), weights=str(weights)).targets[0].path
    )
    assert check_files(path) is None
    good = path.read_bytes()
    for damaged, needle in (
        (good[:-10], "cut short or replaced"),
        (good[:-1] + b"\0", "does not match the sha256"),
    ):
        path.write_bytes(damaged)
        assert needle in check_files(path)
        results = tmp_path / f"r{len(damaged)}.json"
        args = ("bench", str(path), "--no-memory", "--duration", "0.05", "-o", str(results))
        r = cli(*args, cwd=tmp_path, monkeypatch=monkeypatch)
        assert r.returncode == 1 and "every row failed" in r.stderr
        assert needle in json.loads(results.read_text())["rows"][0]["error"]
    # A bench of the zoo name with the same weights does not reuse the damaged export: it makes its own.
    fast = dict(memory=False, warmup_s=0.05, min_iters=5, min_seconds=0.05)
    opts = BenchOptions(runtimes=("onnxruntime",), weights=str(weights), export_dir=str(out), **fast)
    (row,) = bench(["lenet5"], opts).rows
    assert not row.error and row.artifact == str(out / "bench" / "lenet5.onnx")


def test_a_full_disk_while_saving_results_leaves_neither_file(tmp_path, monkeypatch):
    """The JSON and its CSV are published together or not at all (a failed write of the second one
    must not leave the first)."""
    from edgecnn.bench.schema import BenchRow, BenchRun, save

    run = BenchRun({"label": "m"}, {}, [BenchRow("lenet5", "fp32", "onnxruntime", "cpu", "fp32", 1)])
    real, partials = Path.write_text, []
    results = tmp_path / "results"

    def full(self, text, *a, **k):
        if self.name.endswith(".partial") and self.parent in (tmp_path, results):
            partials.append(self.name)
            if len(partials) % 2 == 0:  # the second file of the pair: the disk is full by then
                raise OSError(28, "No space left on device")
        return real(self, text, *a, **k)

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError):
        save(run, tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []
    # Through the CLI: one line (exit 1), and neither file.
    results.mkdir()
    args = ("bench", "lenet5", "-r", "onnxruntime", "--no-memory", "--duration", "0.05")
    r = cli(*args, "-o", str(results / "r.json"), cwd=tmp_path, monkeypatch=monkeypatch)
    assert_one_line_error(r, 1, "No space left on device")
    assert list(results.iterdir()) == []


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x9f\xff binary garbage",
        b"[]",
        json.dumps({"format": CACHE_FORMAT, "entries": {"k": "fast"}}).encode(),
        json.dumps(
            {"format": CACHE_FORMAT, "entries": {"k": {"layers": {"conv1": -1.0}, "ratio": None}}}
        ).encode(),
        b'{"format": "something else", "entries": {}}',
    ],
    ids=["binary", "list", "string-value", "negative-ms", "foreign"],
)
def test_a_corrupt_latency_cache_is_named_moved_aside_and_rebuilt(tmp_path, caplog, body):
    """A cache file that does not parse or validate costs a re-measure, never a failed plan: it is
    named in a warning, moved to <name>.bad, and the next save writes a good one."""
    import torch

    from edgecnn.plan.latency import LatencyTable

    first = LatencyTable("torch", cache_dir=tmp_path, seconds=0.01, min_iters=3)
    first.path.write_bytes(body)
    with caplog.at_level("WARNING", logger="edgecnn"):
        table = LatencyTable("torch", cache_dir=tmp_path, seconds=0.01, min_iters=3)
    assert table.entries == {} and str(table.path) in caplog.text and "unreadable" in caplog.text
    assert not table.path.exists() and table.path.with_name(table.path.name + ".bad").read_bytes() == body
    ms = table.latency(torch.nn.Conv2d(3, 4, 3), (3, 8, 8))
    table.save()
    again = LatencyTable("torch", cache_dir=tmp_path, seconds=0.01, min_iters=3)
    assert ms > 0 and list(again.entries.values()) == [ms] and again.hits == 0


def test_an_older_latency_cache_format_is_replaced_without_a_warning(tmp_path, caplog):
    from edgecnn.plan.latency import LatencyTable

    path = LatencyTable("torch", cache_dir=tmp_path).path
    path.write_text(json.dumps({"format": "edgecnn-latency/3", "entries": {"k": 1.0}}))
    with caplog.at_level("WARNING", logger="edgecnn"):
        assert LatencyTable("torch", cache_dir=tmp_path).entries == {}
    assert "unreadable" not in caplog.text and path.exists()


def test_other_processes_load_is_measured_and_our_own_work_is_not(tmp_path):
    """A CPU-bound process on a core shows as about one core of others' load; our own busy loop
    does not count (the load average would count both)."""
    import subprocess
    import time

    from edgecnn.bench.load import OtherLoad

    def spin(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    own = OtherLoad().start()
    spin(0.6)
    own.stop()
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        other = OtherLoad().start()
        time.sleep(0.6)
        other.stop()
    finally:
        hog.kill()
        hog.wait()
    assert other.cores > 0.6 and other.noisy and own.cores < other.cores - 0.4


def test_a_latency_timed_while_others_held_a_core_is_timed_again(tmp_path, monkeypatch):
    """A timing made while other processes used over NOISY_CORES is made once more at once; the cache
    keeps what the machine was doing, and an entry timed busy is timed again when the machine is
    quiet (used as it is while the machine is still busy). A corrupt state is ignored."""
    import edgecnn.bench.load as load
    from edgecnn.plan.latency import LatencyTable

    others = iter([0.9, 0.8, 0.1])  # busy, busy again (kept, marked), then quiet

    class Fake(load.OtherLoad):
        def stop(self):
            self.cores = next(others)
            return self

    monkeypatch.setattr(load, "OtherLoad", Fake)
    calls = []
    table = LatencyTable("torch", cache_dir=tmp_path)
    assert table.measured("busy", lambda: calls.append(1) or 2.0) == 2.0 and len(calls) == 2
    assert table.measured("calm", lambda: calls.append(1) or 1.0) == 1.0 and len(calls) == 3
    table.save()
    state = json.loads(table.path.read_text())["state"]
    assert {k: v["others"] for k, v in state.items()} == {"busy": 0.8, "calm": 0.1}
    assert all(abs(v["at"] - __import__("time").time()) < 60 for v in state.values())
    for now, busy_entry in ((0.1, None), (0.9, 2.0)):
        monkeypatch.setattr(load, "other_load_now", lambda cores=now: Fake(cores))
        again = LatencyTable("torch", cache_dir=tmp_path)
        assert again.get("busy") == busy_entry and again.get("calm") == 1.0
        assert (again.stale, again.hits) == ((1, 1) if busy_entry is None else (0, 2))
    others = iter([0.9] * 7)  # a load that stays: timed twice three times, then once each
    table, calls = LatencyTable("torch", cache_dir=tmp_path), []
    for k in range(4):
        table.measured(f"hog{k}", lambda: calls.append(1) or 1.0)
    assert len(calls) == 7
    body = json.loads(table.path.read_text())
    table.path.write_text(json.dumps({**body, "state": ["not", "a", "dict"]}))
    assert LatencyTable("torch", cache_dir=tmp_path).get("busy") == 2.0  # no state: trusted as before


def _unreadable(root, good_per_class: int, bad_per_class: int):
    """Two class folders: `good_per_class` real images and `bad_per_class` files that do not decode."""
    _folder(root, per_class=good_per_class) if good_per_class else None
    for c in range(2):
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(bad_per_class):
            (d / f"bad{i}.png").write_bytes(b"not a png" * i)
    return root


@pytest.mark.parametrize(
    "good, bad, needle",
    [
        (0, 10, "none of the"),  # 20 images, none readable
        (0, 3, "none of the"),  # 6 images, none readable: not a message about --calib-images
        (3, 20, "only "),  # a few readable among many: too few to score candidates on
    ],
    ids=["20-unreadable", "6-unreadable", "few-readable"],
)
def test_compress_on_unreadable_data_is_one_line_naming_the_files_before_any_work(
    tmp_path, good, bad, needle
):
    """No candidate is ever scored on zero images: compress counts the readable images first and says
    how many could be read, naming two that could not."""
    data = _unreadable(tmp_path / "data", good, bad)
    before = snapshot(tmp_path)
    r = run("compress", "lenet5", "--data", str(data), "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert_one_line_error(r, 2, needle)
    assert "can be read" in r.stderr and "bad" in r.stderr and ".png" in r.stderr, r.stderr
    assert "--calib-images" not in r.stderr or needle == "only "
    assert snapshot(tmp_path) == before and "profiling" not in r.stderr and "timing" not in r.stderr


def test_candidate_scores_on_no_image_are_an_error():
    import torch

    from edgecnn.data import DataError
    from edgecnn.plan import enumerate_slots
    from edgecnn.plan.scores import score

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3)).eval()
    slots = enumerate_slots(model, torch.zeros(1, 3, 16, 16))
    with pytest.raises(DataError, match="no calibration image"):
        score(slots, model, [])


def test_a_pipeline_never_replaces_an_earlier_runs_results_without_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"earlier": true}')
    before = snapshot(tmp_path)
    r = run("pipeline", "lenet5", "--data", "digits", "-o", str(out), cwd=tmp_path)
    assert_one_line_error(r, 2, "has the results of an earlier run (results.json); pass --force")
    assert snapshot(tmp_path) == before and "reference" not in r.stderr


def test_an_output_that_is_a_folder_or_too_long_is_refused_before_any_work(tmp_path):
    folder = tmp_path / "w.safetensors"
    folder.mkdir()
    long = tmp_path / ("n" * 300 + ".json")
    before = snapshot(tmp_path)
    for args, needle in (
        ((*TRAIN, "-o", str(folder), "--force"), "is a folder; give a file name"),
        (("bench", "lenet5", "-r", "torch", "-o", str(long)), "this filesystem allows 255"),
        (("export", "lenet5", "-o", str(tmp_path / ("d" * 300))), "this filesystem allows 255"),
    ):
        r = run(*args, cwd=tmp_path)
        assert_one_line_error(r, 2, needle)
        assert "epoch 1" not in r.stderr and "measuring" not in r.stderr
    assert snapshot(tmp_path) == before


def test_the_temporary_name_of_an_atomic_write_is_short_whatever_the_name(tmp_path):
    """A 250-byte name is legal; its hidden temporary sibling must be too (it used to be the name plus
    a suffix, past the 255-byte limit, and bench lost its results after measuring)."""
    from edgecnn.artifacts import atomic_output, sweep_stale

    path = tmp_path / ("r" * 245 + ".json")
    with atomic_output(path) as tmp:
        assert len(tmp.name) < 40 and tmp.parent == tmp_path
        tmp.write_text("{}")
    assert path.read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == [path.name]
    stale = tmp_path / ".999999999.abcd.partial"  # a killed writer's leftover: swept
    stale.write_text("x")
    assert sweep_stale(tmp_path) == [stale]


@pytest.mark.parametrize(
    "manifest, needle",
    [
        (b"\x00\xff not json", "is corrupt (UnicodeDecodeError)"),
        (b"{not json", "is corrupt (JSONDecodeError)"),
        (b"[]", "is not an edgecnn export manifest"),
        (b'{"format": "edgecnn-export/1", "input": {"shape": "abc"}}', "records no valid input shape"),
        (
            b'{"format": "edgecnn-export/1", "input": {"shape": [1, 1, 32, 32]}, "files": 3}',
            "corrupt file list",
        ),
        (None, "does not match the sha256 in its manifest"),
    ],
    ids=["binary", "not-json", "list", "bad-shape", "bad-files", "changed-artifact"],
)
def test_a_corrupt_or_mismatching_manifest_is_named_as_such(tmp_path, manifest, needle):
    """Never "no manifest beside it" for a manifest that is there: bench names it corrupt (or the
    artifact changed), and a run whose every row failed exits 1."""
    r = run("export", "lenet5", "-o", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    onnx = tmp_path / "lenet5.onnx"
    if manifest is None:
        onnx.write_bytes(onnx.read_bytes()[:-1] + b"\x00")  # same size, other bytes
    else:
        (tmp_path / "lenet5.onnx.json").write_bytes(manifest)
    r = run("bench", str(onnx), "--json", "--no-memory", cwd=tmp_path)
    assert r.returncode == 1, r.stderr[-2000:]
    (row,) = json.loads(r.stdout)["rows"]
    assert needle in row["error"] and "no manifest" not in row["error"], row["error"]


def test_a_batch_this_machine_cannot_hold_is_refused_before_any_allocation(tmp_path):
    """export: one line from the analysis' estimate, before the reference runs; bench: that row."""
    before = snapshot(tmp_path)
    r = run("export", "lenet5", "--batch", "5000000", "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert_one_line_error(r, 2, "batch 5000000, needs at least")
    assert snapshot(tmp_path) == before
    r = run("bench", "lenet5", "-r", "torch", "--batch", "5000000", "--json", "--no-memory", cwd=tmp_path)
    assert r.returncode == 1 and "needs at least" in json.loads(r.stdout)["rows"][0]["error"]


def test_bench_at_a_batch_over_exports_max_batch_runs(tmp_path):
    """--max-batch is TensorRT's dynamic-batch profile maximum, not a cap on a static batch."""
    args = ["bench", "lenet5", "-r", "onnxruntime", "--batch", "64", "--json", "--no-memory"]
    r = run(*args, "--duration", "0.2", "--export-dir", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["rows"][0]["latency"]["batch"] == 64


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried "
            "to allocate 120000000000 bytes"
        ),
        RuntimeError(
            "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer"
        ),
        MemoryError(),
        OSError(12, "Cannot allocate memory"),
    ],
    ids=["torch-cpu", "onnxruntime", "python", "enomem"],
)
def test_an_allocation_failure_anywhere_is_the_promised_line(error, capsys):
    import typer

    from edgecnn.cli._common import handle_errors

    @handle_errors
    def command():
        raise error

    with pytest.raises(typer.Exit) as exit_info:
        command()
    err = capsys.readouterr().err
    assert exit_info.value.exit_code == 1 and "out of memory; try a smaller --batch" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("weights, info", [(b"garbage", b"{}"), (None, b"[1, 2]"), (None, b"\x00\xff")])
def test_a_corrupt_cached_reference_is_named_moved_aside_and_retrained(tmp_path, caplog, weights, info):
    """The pipeline's reference cache heals like the latency cache: never a traceback."""
    from edgecnn.train.api import _cached_reference
    from edgecnn.transforms import save_with_recipe
    from edgecnn.transforms.model_file import model_recipe
    from edgecnn.zoo import load_model

    path, info_path = tmp_path / "ref.safetensors", tmp_path / "ref.json"
    if weights is None:
        model = load_model("lenet5")
        save_with_recipe(model.module, model_recipe(model, (32, 32)), path)
    else:
        path.write_bytes(weights)
    info_path.write_bytes(info)
    with caplog.at_level("WARNING", logger="edgecnn"):
        assert _cached_reference(path, info_path) is None
    assert (
        "cached reference" in caplog.text and str(path) in caplog.text and "training it again" in caplog.text
    )
    assert not path.exists() and not info_path.exists()
    assert (tmp_path / "ref.safetensors.bad").exists() and (tmp_path / "ref.json.bad").read_bytes() == info


def _dead_pid() -> int:
    import subprocess

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_an_interrupted_pipelines_outputs_are_replaced_by_its_re_run_and_no_others(tmp_path):
    """What a killed pipeline left (named in its journal) is replaced without --force; the same files
    with no journal are the user's, and refused."""
    from edgecnn.artifacts import ArtifactExistsError
    from edgecnn.pipeline import _check_results

    out = tmp_path / "out"
    out.mkdir()
    (out / "lenet5.original.safetensors").write_text("half")
    with pytest.raises(ArtifactExistsError, match="earlier run"):
        _check_results(out, "lenet5", force=False)
    journal = out / f".edgecnn-run.{_dead_pid()}.pipeline.json"
    journal.write_text(json.dumps({"command": "pipeline", "outputs": ["lenet5.original.safetensors"]}))
    resumed = _check_results(out, "lenet5", force=False)
    with resumed.writing():
        assert not journal.exists()  # taken over by the new run
    assert [p.name for p in out.iterdir()] == ["lenet5.original.safetensors"]  # done: no journal left


@pytest.mark.parametrize(
    "body", [b"", b"\x80\x04garbage", b"PK\x03\x04 not a zip"], ids=["empty", "pickle", "zip"]
)
def test_a_corrupt_resume_checkpoint_is_one_line_without_torchs_unsafe_advice(tmp_path, body):
    from edgecnn.errors import WeightsError
    from edgecnn.train.checkpoint import load_checkpoint

    ckpt = tmp_path / "w.ckpt"
    ckpt.write_bytes(body)
    with pytest.raises(WeightsError, match=r"cannot resume from .*w\.ckpt: it is") as e:
        load_checkpoint(ckpt)
    assert "weights_only" not in str(e.value) and "\n" not in str(e.value)
