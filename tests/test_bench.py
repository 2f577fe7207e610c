"""Benchmark harness: statistics, rows across runtimes, memory probe, accuracy, schema, compare, plot."""

import json
import sys

import numpy as np
import pytest
from _cli import run_cli

from edgecnn.bench import BenchOptions, ResultFileError, bench, load, save
from edgecnn.bench.latency import LatencyStats, time_calls
from edgecnn.report.compare import compare
from edgecnn.report.plot import pareto_front

EDGECNN = [sys.executable, "-m", "edgecnn"]
FAST = dict(warmup_s=0.05, min_iters=5, min_seconds=0.05)
HAS_OPENVINO = __import__("importlib").util.find_spec("openvino") is not None


def run(*args, cwd=None):
    return run_cli(*args, cwd=cwd)


def test_latency_statistics_from_known_times():
    times = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    s = LatencyStats.from_times(times, batch=4, warmup_s=0.0)
    assert (s.min_ms, s.median_ms, s.mean_ms) == pytest.approx((1.0, 50.5, 50.5))
    assert s.p90_ms == pytest.approx(np.percentile(np.arange(1, 101), 90))
    assert s.p99_ms == pytest.approx(99.01)
    assert s.fast_ms == pytest.approx(10.9)  # the 10th percentile, what paired timings compare
    assert s.throughput == pytest.approx(4 * 1000 / 50.5)


def test_time_calls_honours_minimum_iterations_and_duration():
    calls = []
    s = time_calls(lambda: calls.append(1), batch=1, warmup_s=0.0, min_iters=25, min_seconds=0.02)
    assert s.iterations >= 25 and len(calls) == s.iterations + 1  # one warm-up call at least


def test_pareto_front():
    pts = [(10, 70), (5, 60), (20, 75), (12, 65), (5, 55)]
    assert sorted(pareto_front(pts)) == [0, 1, 2]


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory, lenet_weights):
    out = tmp_path_factory.mktemp("bench")
    opts = BenchOptions(
        runtimes=("torch", "onnxruntime", "openvino", "tensorrt"),
        data="digits",
        weights=str(lenet_weights),
        export_dir=str(out / "export"),
        **FAST,
    )
    return bench(["lenet5"], opts), out


def test_every_runtime_reports_identical_accuracy_on_the_digits(lenet_run):
    result, _ = lenet_run
    rows = {r.runtime: r for r in result.rows}
    # Every installed one: without OpenVINO its row is an install hint and torch/ORT still must agree.
    ok = [rows[r] for r in ("torch", "onnxruntime", "openvino") if HAS_OPENVINO or r != "openvino"]
    for row in ok:
        assert not row.error, row.error
        assert row.accuracy.images == 1000 and row.accuracy.dataset == "digits:test"
        assert row.latency.iterations >= 5 and row.latency.median_ms > 0
        assert row.latency.p90_ms >= row.latency.median_ms >= row.latency.min_ms
        assert row.memory.peak_over_baseline_bytes > 0
        assert row.params == 61_706 and row.macs == 416_520
    assert ok[0].accuracy.top1 > 85  # trained model: the numbers mean something
    assert len({(r.accuracy.top1, r.accuracy.top5) for r in ok}) == 1
    assert rows["onnxruntime"].file_size_bytes > 200_000 and rows["torch"].artifact is None


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("tensorrt") is not None, reason="TensorRT is installed here"
)
def test_missing_runtime_is_a_row_with_an_install_hint(lenet_run):
    result, _ = lenet_run
    (row,) = [r for r in result.rows if r.runtime == "tensorrt"]
    assert row.error == "tensorrt is not installed" and "edgecnn[tensorrt]" in row.hint
    assert row.latency is None


def test_results_round_trip_json_and_csv(lenet_run):
    result, out = lenet_run
    json_path, csv_path = save(result, out / "r.json")
    loaded = load(json_path)
    assert loaded.machine == result.machine and len(loaded.rows) == len(result.rows)
    assert loaded.rows[0].latency == result.rows[0].latency
    m = loaded.machine
    assert m["logical_cores"] >= 1 and m["versions"]["onnxruntime"] and "isa" in m and m["ram_bytes"] > 0
    header, *lines = csv_path.read_text().splitlines()
    assert header.startswith("machine,model,variant,runtime") and len(lines) == len(result.rows)


def test_artifacts_are_reused_when_the_weights_match(lenet_run, lenet_weights):
    result, out = lenet_run
    onnx_row = next(r for r in result.rows if r.runtime == "onnxruntime")
    before = __import__("os").stat(onnx_row.artifact).st_mtime_ns
    opts = BenchOptions(
        runtimes=("onnxruntime",),
        weights=str(lenet_weights),
        export_dir=str(out / "export"),
        memory=False,
        **FAST,
    )
    again = bench(["lenet5"], opts)
    assert again.rows[0].artifact == onnx_row.artifact
    assert __import__("os").stat(onnx_row.artifact).st_mtime_ns == before


def test_bench_never_overwrites_what_export_wrote(tmp_path, lenet_weights):
    """A bench of other (here: random) weights exports its own artifact under bench/ and leaves the
    user's export, made from trained weights, byte for byte as it was."""
    import hashlib

    from edgecnn.export import ExportOptions, export

    mine = export("lenet5", ExportOptions(out_dir=tmp_path, verify=False), weights=str(lenet_weights))
    path = mine.targets[0].path
    files = sorted(p for p in tmp_path.iterdir() if p.is_file())
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    opts = BenchOptions(runtimes=("onnxruntime",), export_dir=str(tmp_path), memory=False, **FAST)
    (row,) = bench(["lenet5"], opts).rows
    assert not row.error and row.artifact == str(tmp_path / "bench" / "lenet5.onnx")
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files} == before
    # with the same weights, the user's export is the one reused
    opts = BenchOptions(
        runtimes=("onnxruntime",), export_dir=str(tmp_path), weights=str(lenet_weights), memory=False, **FAST
    )
    (row,) = bench(["lenet5"], opts).rows
    assert row.artifact == path


def test_artifact_file_with_static_batch_pads_the_last_batch(lenet_run):
    out = lenet_run[1]
    from edgecnn.export import ExportOptions, export

    art = export("lenet5", ExportOptions(out_dir=out / "b3", batch=3, verify=False)).targets[0].path
    rows = bench([art], BenchOptions(batches=(3, 2), data="digits", memory=False, **FAST)).rows
    assert rows[0].runtime == "onnxruntime" and rows[0].accuracy.images == 1000  # 1000 = 333*3 + 1
    assert "static batch of 3" in rows[1].error


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed")
def test_int8_rows(tmp_path, lenet_weights):
    """Each runtime's fast int8 beside fp32; OpenVINO's int8 rows run their float layers in fp32 like
    its fp32 rows (never its bf16 default), and its default, bf16, is a row of its own."""
    from edgecnn.report.tables import markdown

    opts = BenchOptions(
        runtimes=("onnxruntime", "openvino"),
        precisions=("fp32", "bf16", "int8"),
        calib="digits",
        weights=str(lenet_weights),
        export_dir=str(tmp_path),
        memory=False,
        data="digits",
        data_limit=200,
        **FAST,
    )
    run = bench(["lenet5"], opts)
    rows = list(run.rows)
    assert [(r.runtime, r.variant) for r in rows] == [
        ("onnxruntime", "fp32"),
        ("onnxruntime", "int8u8"),  # each runtime's fast int8 scheme by default
        ("openvino", "fp32"),
        ("openvino", "bf16"),
        ("openvino", "int8"),
    ]
    assert [r.float_math for r in rows] == ["", "", "fp32", rows[3].float_math, "fp32"]
    bf16 = rows.pop(3)  # a CPU without bf16 units says so in the row, never runs fp32 under its name
    assert (bf16.float_math == "bf16" and not bf16.error) or "no such units" in bf16.error
    if not bf16.error:
        assert abs(bf16.accuracy.top1 - rows[2].accuracy.top1) <= 2.0
        assert "openvino ran float layers in fp32 (fp32, int8 rows) and bf16 (bf16 rows)" in markdown(run)
    for fp32, int8 in (rows[:2], rows[2:]):
        assert (
            not int8.error and int8.file_size_bytes < fp32.file_size_bytes / 2
        )  # tiny model: metadata counts
        assert abs(int8.accuracy.top1 - fp32.accuracy.top1) <= 2.0


def test_compare_and_plot_cli(tmp_path, lenet_weights):
    files = []
    for threads in (1, 2):
        path = tmp_path / f"t{threads}.json"
        r = run(
            "bench",
            "lenet5",
            "-r",
            "torch,onnxruntime",
            "--threads",
            str(threads),
            "--weights",
            str(lenet_weights),
            "--no-memory",
            "--duration",
            "0.2",
            "--iterations",
            "5",
            "-o",
            str(path),
            "--export-dir",
            str(tmp_path / "e"),
        )
        assert r.returncode == 0, r.stderr
        files.append(path)
    c = compare([load(f) for f in files])
    assert c.labels[0].endswith(" threads=1") and c.labels[1].endswith(" threads=2")
    (key, values), _ = c.rows
    assert key == ("lenet5", "fp32", "torch", 1) and all(v > 0 for v in values)
    assert c.ratios(values)[0] == 1.0
    r = run("compare", *map(str, files), "--markdown")
    assert r.returncode == 0 and "/ base" in r.stdout and "| lenet5 | fp32 | onnxruntime | 1 |" in r.stdout
    assert r.stdout.splitlines()[0] == f"median_ms (ms); ratios against {c.labels[0]}"
    png = tmp_path / "fig.png"
    r = run("plot", *map(str, files), "-o", str(png))
    assert r.returncode == 0, r.stderr
    from PIL import Image

    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 500
        pixels = np.asarray(im.convert("L"))
        assert pixels.std() > 5  # something was drawn
    r = run("plot", *map(str, files), "-o", str(png))
    assert r.returncode == 2 and "--force" in r.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"rows": [', "is not valid JSON"),
        ('{"schema": "other"}', "is not an edgecnn benchmark result"),
        ('{"schema": "edgecnn-bench", "version": 99, "rows": []}', "schema version 99"),
        ('{"schema": "edgecnn-bench", "version": "1", "rows": []}', "schema version '1'; this edgecnn"),
    ],
)
def test_bad_result_files(tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(ResultFileError, match=message):
        load(bad)
    r = run("compare", str(bad), str(bad))
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_bench_cli_bad_input(tmp_path):
    r = run("bench", "lenet5", "-r", "onnxrt")
    assert r.returncode == 2 and "did you mean: onnxruntime" in r.stderr
    r = run("bench", "lenet5", "--precision", "int8")
    assert r.returncode == 2 and "--calib" in r.stderr
    r = run("bench", "lenet5", "--batch", "1,x")
    assert r.returncode == 2 and "comma-separated" in r.stderr


def test_bench_json_output_has_the_schema(tmp_path):
    path = tmp_path / "r.json"
    r = run(
        "bench",
        "lenet5",
        "-r",
        "onnxruntime",
        "--no-memory",
        "--duration",
        "0.1",
        "-o",
        str(path),
        "--export-dir",
        str(tmp_path / "e"),
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(path.read_text())
    assert (
        data["schema"] == "edgecnn-bench"
        and data["version"] == 1
        and data["rows"][0]["runtime"] == "onnxruntime"
    )
    # Nothing is replaced without --force (the JSON, or the CSV beside it), and the refusal comes
    # before any measurement.
    csv_bytes = (tmp_path / "r.csv").read_bytes()
    for existing in ("r.json", "r.csv"):
        r = run("bench", "lenet5", "-r", "onnxruntime", "--duration", "5", "-o", str(path))
        assert r.returncode == 2 and f"{existing} already exists; pass --force" in r.stderr
        assert "Traceback" not in r.stderr and "p50" not in r.stdout
        assert (tmp_path / "r.csv").read_bytes() == csv_bytes
        path.unlink(missing_ok=True)  # next round: only the CSV is there, and no JSON is made
    assert not path.exists()
    # An output folder that cannot be made is refused up front too.
    (tmp_path / "afile").write_text("x")
    r = run("bench", "lenet5", "-r", "onnxruntime", "-o", str(tmp_path / "afile" / "r.json"))
    assert r.returncode == 2 and "is not a folder" in r.stderr and "p50" not in r.stdout


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("tensorrt") is not None, reason="TensorRT is installed here"
)
def test_engine_artifact_without_tensorrt_is_an_error_row(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not built here")
    (row,) = bench([str(engine)], BenchOptions(memory=False, **FAST)).rows
    assert row.runtime == "tensorrt" and row.error == "tensorrt is not installed"
    assert "edgecnn[tensorrt]" in row.hint
    r = run("bench", str(engine), "--no-memory")
    assert "tensorrt is not installed" in r.stdout and "edgecnn[tensorrt]" in r.stdout
    # its only row failed: the command failed
    assert r.returncode == 1 and r.stderr.count("error:") == 1 and "every row failed (1)" in r.stderr


def test_a_reduced_precision_row_slower_than_fp32_is_flagged():
    from edgecnn.bench.schema import BenchRow, BenchRun
    from edgecnn.report.tables import markdown, rich_table, slower_than_fp32

    def row(variant, runtime, precision, ms, batch=1, p90=None):
        return BenchRow(
            "resnet18",
            variant,
            runtime,
            "cpu",
            precision,
            batch,
            latency=LatencyStats(
                1, 30, 0.0, ms, ms, ms, p90 or ms * 1.1, p90 or ms * 1.1, p90 or ms * 1.1, 0, 1e3 / ms
            ),
        )

    rows = [
        row("fp32", "onnxruntime", "fp32", 1.46),
        row("int8", "onnxruntime", "int8", 4.80),  # slower: flagged
        row("int8u8", "onnxruntime", "int8", 0.90),
        row("int8", "onnxruntime", "int8", 0.50, batch=8),  # no fp32 row at batch 8: nothing to say
        row("fp32", "openvino", "fp32", 1.20),
        row("int8", "openvino", "int8", 0.70),
        row("a.onnx", "onnxruntime", "fp32", 2.0),
        row("a.int8.onnx", "onnxruntime", "int8", 2.5, p90=4.0),  # artifact files pair by name; busy
    ]
    run = BenchRun({"label": "m", "cpu": "x"}, {}, rows)
    assert [(r.variant, ref.variant) for r, ref in slower_than_fp32(run)] == [
        ("int8", "fp32"),
        ("a.int8.onnx", "a.onnx"),
    ]
    md = markdown(run)
    assert "| 4.80 ! |" in md and "| 0.900 |" in md
    assert "! resnet18 int8 on onnxruntime batch 1 is slower than fp32: 4.80 vs 1.46 ms" in md
    assert "| 2.50 !~ |" in md and md.count("~") == 2  # its p90 spread wide: marked and said once
    assert "~ resnet18 a.int8.onnx on onnxruntime batch 1: p90 1.6x its p50, the machine was busy" in md
    from rich.console import Console

    console = Console(width=80, record=True, file=__import__("io").StringIO())
    console.print(rich_table(run, width=80))
    assert (
        "! resnet18 int8 on onnxruntime batch 1 is slower than fp32: 4.80 vs 1.46 ms" in console.export_text()
    )


def test_compare_with_nothing_in_common_is_an_error(tmp_path):
    """Two files whose rows share no key: no table of dashes, one line and exit 2."""
    from edgecnn.bench.schema import BenchRow, BenchRun, save

    files = []
    for i, model in enumerate(("lenet5", "resnet18")):
        row = BenchRow(model, "fp32", "onnxruntime", "cpu", "fp32", 1, latency=_latency(1.0 + i))
        path = tmp_path / f"{model}.json"
        save(BenchRun({"label": "m"}, {}, [row]), path)
        files.append(str(path))
    r = run("compare", *files)
    assert r.returncode == 2 and "nothing to compare" in r.stderr and r.stderr.count("error:") == 1


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("tensorrt") is not None, reason="TensorRT is installed here"
)
def test_a_partly_failed_run_says_how_many_rows_failed_and_exits_0(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not built here")
    onnx_path = tmp_path / "lenet5.onnx"
    from edgecnn.export import ExportOptions, export

    export("lenet5", ExportOptions(out_dir=tmp_path, verify=False))
    r = run("bench", str(onnx_path), str(engine), "--no-memory", "--duration", "0.05")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "1 of 2 rows failed (see the status column)"


def test_at_80_columns_every_name_is_whole_and_progress_shows_in_a_log(tmp_path):
    """Piped (CliRunner's stderr is no terminal): one progress line per row on stderr; COLUMNS=80: the
    table keeps every model, variant and runtime name whole, drops columns by need and says which, and
    a failed row's error is numbered in the status column and given whole under the table, on one
    line (piped output is never hard-wrapped)."""
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not built here")
    args = ("bench", "lenet5", str(engine), "-r", "torch,onnxruntime", "--no-memory", "--duration", "0.05")
    r = run_cli(*args, env={"COLUMNS": "80"}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "measuring 1/3: lenet5 fp32 torch batch 1" in r.stderr
    assert "measuring 2/3: lenet5 fp32 onnxruntime batch 1" in r.stderr
    table = r.stdout.splitlines()
    assert max(len(line) for line in table if line[:1] in "┏┃┡│└") <= 80, r.stdout
    body = [line for line in table if line.startswith("│")]
    assert {line.split("│")[3].strip() for line in body} == {"torch", "onnxruntime", "tensorrt"}
    assert "batch 1" in r.stdout.splitlines()[1]  # every row's batch: said once, above the table
    assert any(line.split("│")[4].strip() == "error 1" for line in body)
    assert any(line.startswith("error 1: m m.engine tensorrt: tensorrt is not installed") for line in table)
    assert "not shown at this width:" in r.stdout and "p50 ms" in table[3]  # under the title lines
    wide = run_cli(*args, env={"COLUMNS": "200"}, cwd=tmp_path)
    assert "not shown" not in wide.stdout and "p99 ms" in wide.stdout and "MACs" in wide.stdout
    assert "peak mem" not in wide.stdout and "top-5" not in wide.stdout  # nothing measured: no column


def test_the_plot_keys_points_by_model_and_batch_and_says_why_a_panel_is_empty(tmp_path):
    """Latency per image (batch 8 at 8 ms is 1 ms an image), one key number per model, variant and
    batch shared by its runtimes and precisions, colour by runtime; rows with neither MACs nor
    top-1 (artifacts benched alone) still give a figure, whose panels say what is missing."""
    import matplotlib.image

    from edgecnn.bench.schema import BenchRow, BenchRun
    from edgecnn.data.scoring import Accuracy
    from edgecnn.report.plot import RUNTIME_COLOURS, _points, _styles, plot

    def row(runtime, precision, batch, ms, macs=None, top1=None):
        acc = Accuracy(top1, 100.0, 100, 0, "digits:test") if top1 is not None else None
        lat = _latency(ms)
        return BenchRow(
            "r18", precision, runtime, "cpu", precision, batch, latency=lat, macs=macs, accuracy=acc
        )

    rows = [
        row("onnxruntime", "fp32", 1, 2.0, 1e9, 70.0),
        row("openvino", "int8", 1, 1.0, 1e9, 69.0),
        row("onnxruntime", "fp32", 8, 8.0, 1e9, 70.0),
        BenchRow("r18", "fp32", "tensorrt", "cpu", "fp32", 1, error="tensorrt is not installed"),
    ]
    points, key = _points([BenchRun({"label": "m"}, {}, rows)])
    assert [(p.key, p.ms) for p in points] == [(1, 2.0), (1, 1.0), (2, 1.0)]  # the failed row: no point
    assert key == [" 1  r18  batch 1", " 2  r18  batch 8"]
    colours, markers = _styles(points)
    assert colours == {"onnxruntime": RUNTIME_COLOURS["onnxruntime"], "openvino": RUNTIME_COLOURS["openvino"]}
    assert markers == {"fp32": "o", "int8": "^"}
    for name, run_rows in (("full", rows), ("bare", [row("onnxruntime", "fp32", 1, 2.0)])):
        path = plot([BenchRun({"label": "m"}, {}, run_rows)], tmp_path / f"{name}.png")
        height, width, _ = matplotlib.image.imread(path).shape
        assert width > 1000 and height > 500


def test_the_plot_tells_two_runs_of_one_machine_apart_by_file():
    """Two result files from one machine (say, before and after a change): one key number each,
    named by file as compare names its columns, never one number for both points."""
    from edgecnn.bench.schema import BenchRow, BenchRun
    from edgecnn.report.plot import _points

    def run(name, ms):
        row = BenchRow("r18", "fp32", "onnxruntime", "cpu", "fp32", 1, latency=_latency(ms))
        return BenchRun({"label": "box"}, {}, [row], path=f"/results/{name}.json")

    points, key = _points([run("before", 2.0), run("after", 1.5)])
    assert [(p.key, p.ms) for p in points] == [(1, 2.0), (2, 1.5)]
    assert key == [
        " 1  r18  batch 1  run #1",
        " 2  r18  batch 1  run #2",
        "#1: box [before]",
        "#2: box [after]",
    ]


def test_top5_is_not_reported_with_five_classes_or_fewer():
    """On a 3-class task every image is in the top 5: 100% would say nothing."""
    from edgecnn.bench.accuracy import evaluate

    class Data:
        source, skipped = "three", 0

        def batches(self, batch, limit=None):
            yield np.zeros((4, 1), np.float32), np.array([0, 1, 2, 0])

    class Runner:
        batch = None

        def __init__(self, classes):
            self.classes = classes

        def run(self, x):
            return np.tile(np.arange(self.classes, dtype=np.float32)[::-1], (len(x), 1))  # always class 0

    three = evaluate(Runner(3), Data(), batch=4)
    assert three.top1 == 50.0 and three.top5 is None
    assert evaluate(Runner(10), Data(), batch=4).top5 == 100.0


def test_bench_json_is_the_result_alone(tmp_path):
    path = tmp_path / "r.json"
    args = ("bench", "lenet5", "-r", "onnxruntime", "--no-memory", "--duration", "0.05", "--json", "-o", path)
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)  # the notes ("wrote ...") go to stderr
    assert d["rows"][0]["runtime"] == "onnxruntime" and d["rows"][0]["latency"]["median_ms"] > 0
    assert f"wrote {path}" in r.stderr and json.loads(path.read_text())["rows"] == d["rows"]


def _latency(ms: float) -> LatencyStats:
    """One timing whose every percentile is `ms`."""
    return LatencyStats.from_times([ms / 1e3], batch=1, warmup_s=0.0)


@pytest.mark.parametrize(("given", "metric"), [("p50_ms", "median_ms"), ("top-1", "top1"), ("p90", "p90_ms")])
def test_compare_takes_a_metric_by_the_name_the_bench_table_shows(given, metric):
    from edgecnn.bench.schema import BenchRow, BenchRun
    from edgecnn.data.scoring import Accuracy
    from edgecnn.errors import UnknownNameError
    from edgecnn.report.compare import compare

    def run(ms):
        row = BenchRow("m", "fp32", "onnxruntime", "cpu", "fp32", 1, latency=_latency(ms))
        row.accuracy = Accuracy(top1=ms, top5=None, images=10, skipped=0, dataset="digits:test")
        return BenchRun({"label": f"run{ms}"}, {}, [row])

    c = compare([run(2.0), run(4.0)], metric=given)
    assert c.metric == metric and c.rows[0][1] == [2.0, 4.0]
    with pytest.raises(UnknownNameError, match="did you mean: p50_ms"):
        compare([run(2.0), run(4.0)], metric="p50ms")


def test_compare_tells_a_cpu_and_a_cuda_run_of_one_machine_apart():
    from edgecnn.bench.schema import BenchRow, BenchRun
    from edgecnn.report.compare import compare

    def run(device, ms):
        row = BenchRow(
            model="resnet50", variant="fp32", runtime="torch", precision="fp32", batch=1, device=device
        )
        row.latency = _latency(ms)
        return BenchRun({"label": "h100-box"}, {"device": device}, [row])

    c = compare([run("cpu", 50.0), run("cuda", 5.0)])
    assert c.labels == ["h100-box (cpu)", "h100-box (cuda)"]
    ((key, values),) = c.rows
    assert key == ("resnet50", "fp32", "torch", 1)
    assert values == [50.0, 5.0] and c.ratios(values)[1] == 0.1


QUICK = ("--duration", "0.05", "--warmup", "0.05", "--iterations", "3", "--no-memory")


def test_every_requested_precision_is_a_row_or_named_never_silently_dropped(tmp_path):
    """Eager PyTorch on the CPU runs fp32 and bf16 (native bf16 units, else an error row saying so);
    fp16 and tf32 are CUDA's: an error row when no requested runtime runs them, a line under the
    table when another one does. An all-failed table exits 1."""
    from edgecnn.runtime.torch_runner import cpu_has_bf16

    r = run(
        "bench", "lenet5", "-r", "torch", "--precision", "fp32,bf16,fp16,tf32", *QUICK, "--json", cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    rows = {row["precision"]: row for row in json.loads(r.stdout)["rows"]}
    assert set(rows) == {"fp32", "bf16", "fp16", "tf32"} and not rows["fp32"]["error"]
    assert rows["fp16"]["error"] == "torch does not run fp16 on cpu (it runs fp32, bf16)"
    assert "does not run tf32 on cpu" in rows["tf32"]["error"]
    if cpu_has_bf16():
        assert not rows["bf16"]["error"] and rows["bf16"]["latency"]["median_ms"] > 0
    else:
        assert "no native bf16" in rows["bf16"]["error"]
    r = run("bench", "lenet5", "-r", "torch,onnxruntime", "--precision", "fp32,fp16", *QUICK, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "not measured: torch fp16" in r.stdout and "onnxruntime" in r.stdout
    r = run("bench", "lenet5", "-r", "torch", "--precision", "fp16", *QUICK, cwd=tmp_path)
    assert r.returncode == 1 and "every row failed" in r.stderr and "does not run fp16" in r.stdout
    r = run("bench", "lenet5", "--cuda-graph", *QUICK, cwd=tmp_path)
    assert r.returncode == 2 and "--cuda-graph needs --device cuda" in r.stderr
    r = run("export", "lenet5", "-t", "onnx", "--precision", "bf16", "-o", str(tmp_path / "x"))
    assert r.returncode == 2 and "--target onnx makes fp32, fp16, int8 artifacts, not bf16" in r.stderr


def test_the_torch_runner_casts_to_its_precision():
    import torch

    from edgecnn.runtime.torch_runner import TorchRunner, cpu_has_bf16
    from edgecnn.zoo import load_model

    model = load_model("lenet5").module
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    ref = TorchRunner(model).run(x)
    if not cpu_has_bf16():
        pytest.skip("this CPU has no native bf16")
    runner = TorchRunner(model, dtype="bfloat16")
    assert next(runner.model.parameters()).dtype == torch.bfloat16
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is left as it was
    y = runner.run(x)
    assert y.dtype == np.float32 and np.abs(y - ref).max() / np.abs(ref).max() < 5e-2
