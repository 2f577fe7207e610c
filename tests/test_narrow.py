"""Every table at 80 columns: the columns a reader came for are there, left-out ones are named, no
figure is ever cut ("…"), and lines piped to a file are never hard-wrapped."""

from __future__ import annotations

import pytest
from _cli import run_cli

NARROW = {"COLUMNS": "80"}
FAST = ("--duration", "0.05", "--warmup", "0.05", "--iterations", "3", "--no-memory")


def _table(stdout: str) -> tuple[str, list[str]]:
    """(the header line, the table's lines) of the first table in `stdout`."""
    lines = [line for line in stdout.splitlines() if line.startswith(("┃", "│"))]
    return lines[0], lines


def _check(stdout: str, wanted: tuple[str, ...]) -> None:
    header, lines = _table(stdout)
    assert "…" not in stdout, stdout
    assert all(c in header for c in wanted), header
    assert max(len(line) for line in lines) <= 80, stdout


def test_bench_at_80_columns_keeps_p50_and_top1_for_every_row(tmp_path):
    args = ("bench", "lenet5", "-r", "onnxruntime,openvino", "--precision", "fp32,int8", "--calib", "digits")
    args += ("--calib-size", "16", "--data", "digits", "--data-limit", "50", *FAST, "--no-verify")
    r = run_cli(*args, "-o", tmp_path / "a.json", env=NARROW, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    _check(r.stdout, ("variant", "runtime", "p50 ms", "top-1"))
    assert "model lenet5, batch 1" in r.stdout  # said once, above the table, not on every row
    rows = [line for line in _table(r.stdout)[1][1:] if "onnxruntime" in line or "openvino" in line]
    assert len(rows) == 4 and all(line.split("│")[-2].strip() for line in rows)  # top-1 on every row
    r = run_cli("bench", "lenet5", "-r", "onnxruntime", *FAST, "-o", tmp_path / "b.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("compare", tmp_path / "a.json", tmp_path / "b.json", env=NARROW)
    assert r.returncode == 0, r.stderr
    assert "…" not in r.stdout and max(len(x) for x in _table(r.stdout)[1]) <= 80, r.stdout


@pytest.mark.parametrize(
    ("args", "wanted"),
    [
        (("zoo", "res*"), ("name", "input", "params (M)", "GMACs", "top-1 ref")),
        (("inspect", "densenet121", "--input-size", "64"), ("layer", "MACs", "output")),
        (("inspect", "examples/mynet.onnx"), ("layer", "MACs", "output")),
    ],
)
def test_zoo_and_inspect_at_80_columns_cut_no_cell(args, wanted):
    from pathlib import Path

    r = run_cli(*args, env=NARROW, cwd=Path(__file__).parents[1])
    assert r.returncode == 0, r.stderr
    _check(r.stdout, wanted)


def test_export_at_80_columns_keeps_the_parity_figures_and_piped_lines_stay_whole(tmp_path):
    out = tmp_path / "a-folder-with-a-rather-long-name-to-show-that-paths-are-never-wrapped"
    args = ("export", "lenet5", "-t", "onnx,openvino", "--calib", "digits", "--calib-size", "16", "-o", out)
    r = run_cli(*args, env=NARROW)
    assert r.returncode == 0, r.stderr
    _check(r.stdout, ("target", "precision", "status", "noise err", "image err", "agree"))
    assert "not shown at this width: file, time" in r.stdout
    rule = next(line for line in r.stdout.splitlines() if line.startswith("parity against"))
    assert rule.endswith("image err <= 0.0001") and len(rule) > 80  # one line, not wrapped at 80


def test_help_at_80_columns_cuts_nothing():
    """Every command's help: plain text within 80 columns, no summary or default cut short."""
    from edgecnn.cli import COMMANDS

    for name in ["", *(c[0] for c in COMMANDS)]:
        r = run_cli(*([name] if name else []), "--help", env=NARROW)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert max(len(line) for line in lines) <= 80 and "…" not in r.stdout, r.stdout
        assert not any(line.endswith("...") and "Usage:" not in line for line in lines), r.stdout
        assert "<bool>" not in r.stdout and "╭" not in r.stdout, r.stdout
        if name:  # every default is shown whole: an opening bracket is closed on its line or the next
            text = r.stdout.replace("\n", " ")
            assert all("]" in part for part in text.split("[default: ")[1:]), r.stdout
    r = run_cli("compress", "--help", env=NARROW)
    assert "[default: prune,separable,bottleneck,lowrank]" in " ".join(r.stdout.split())


def test_compare_of_several_models_at_80_columns_names_each_rows_model():
    """Models that differ stay on every row (with the variant, in one column); one batch for all goes
    to the heading; every figure and ratio stays at 80 columns."""
    from rich.console import Console

    from edgecnn.bench.latency import LatencyStats
    from edgecnn.bench.schema import BenchRow, BenchRun
    from edgecnn.report.compare import compare, rich_table

    def run(name, scale):
        rows = [
            BenchRow(
                model, variant, runtime, "cpu", "fp32", 1, latency=LatencyStats.from_times([ms * scale], 1, 0)
            )
            for model, variant, ms in (
                ("efficientnet_b0", "fp32", 3e-3),
                ("resnet18", "fp32", 2e-3),
                ("resnet18", "resnet18.sep-t2 fp32", 1e-3),
            )
            for runtime in ("onnxruntime", "openvino")
        ]
        return BenchRun({"label": "box"}, {}, rows, path=f"/r/{name}.json")

    console = Console(width=80, record=True)
    console.print(rich_table(compare([run("a", 1.0), run("b", 2.0)]), width=80))
    text = console.export_text()
    assert "…" not in text and "not shown" not in text, text
    assert "model / variant" in text and "ratios against #1, batch 1" in text, text
    rows = [line for line in text.splitlines() if line.startswith("│")]
    assert [r.split("│")[1].strip() for r in rows[::2]] == [
        "efficientnet_b0 fp32", "resnet18 fp32", "resnet18.sep-t2 fp32"
    ]  # fmt: skip
    assert all(r.rstrip().endswith("2.00x │") for r in rows), text


def test_the_columns_that_name_a_row_stay_and_cells_are_text_not_markup():
    """At a width too narrow for every column, `keep` stays and the rest go by priority, named; a
    cell that looks like rich markup prints as written."""
    from rich.console import Console

    from edgecnn.report.narrow import narrow_table

    columns = ["model", "variant", "runtime", "p50 ms", "p99 ms", "MACs"]
    rows = [["resnet18", "[bold]sep[/bold]", "onnxruntime", "1.25", "2.50", "1.8G"]]
    priority = ["model", "p50 ms", "p99 ms", "MACs"]
    table, hidden = narrow_table("t", columns, rows, priority=priority, width=60, keep=["variant", "runtime"])
    console = Console(width=60, record=True)
    console.print(table)
    text = console.export_text()
    assert hidden == ["p99 ms", "MACs"] and "[bold]sep[/bold]" in text and "onnxruntime" in text
    assert "1.25" in text and max(len(line) for line in text.splitlines()) <= 60
    _, none_hidden = narrow_table("t", columns, rows, priority=priority, width=None)
    assert none_hidden == []
