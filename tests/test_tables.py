"""The backend and precision tables, and the layering rules they make possible, checked on the source."""

import ast
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgecnn.errors import BadArgumentError
from edgecnn.lazy import import_string
from edgecnn.runtime import (
    BACKENDS,
    INT8_ACTIVATIONS,
    PRECISIONS,
    TARGETS,
    Backend,
    backend_for,
    file_label,
    get_backend,
    precision_tag,
)

PACKAGE = Path(__file__).resolve().parents[1] / "edgecnn"
TABLES = {PACKAGE / "runtime" / "backends.py", PACKAGE / "runtime" / "precisions.py"}
AXIS_NAMES = {*BACKENDS, *TARGETS, *PRECISIONS, *INT8_ACTIVATIONS}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def _strings(node) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [s for e in node.elts for s in _strings(e)]
    return []


def test_no_string_comparison_on_backend_or_precision_names_outside_the_tables():
    found = []
    for path, tree in _modules():
        if path in TABLES:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                names = {s for side in (node.left, *node.comparators) for s in _strings(side)}
                if names & AXIS_NAMES:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {ast.unparse(node)}")
            elif isinstance(node, ast.match_case):
                names = {s for n in ast.walk(node.pattern) for s in _strings(n)}
                if names & AXIS_NAMES:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.pattern.lineno} match")
    assert not found, "compare table rows, not names:\n" + "\n".join(found)


def test_the_scan_finds_what_it_looks_for():
    """The scan above would fail on the old code's kind of branch (it is not vacuous)."""
    tree = ast.parse('if target == "tensorrt" or precision in ("fp16", "int8"): pass')
    hits = [n for n in ast.walk(tree) if isinstance(n, ast.Compare)]
    assert [
        set(s for side in (n.left, *n.comparators) for s in _strings(side)) & AXIS_NAMES for n in hits
    ] == [
        {"tensorrt"},
        {"fp16", "int8"},
    ]


def _imports(tree, path):
    """(module imported, names imported from it) for every import, relative ones resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)[: -node.level]
                module = ".".join([*base, module] if module else base)
            yield module, [a.name for a in node.names]


LAYOUT = PACKAGE.parent / "docs" / "internals.md"  # holds the "Import order:" line


def _layer_order() -> dict[str, int]:
    """docs/internals.md's "Import order:" line as {top-level module: rank}; lower ranks sit below."""
    text = " ".join(LAYOUT.read_text().split())
    line = re.search(r"Import order: (.*?<- cli)\b", text).group(1)
    ranks = {}
    for rank, group in enumerate(line.split("<-")):
        for name in re.split(r"[,/]", group):
            ranks[name.strip()] = rank
    return ranks


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _back_arrows(order: dict[str, int]) -> list[str]:
    found = []
    for path, tree in _modules():
        own = _top(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        for module, _ in _imports(tree, path):
            other = _top(module)
            if not module.startswith("edgecnn") or other in ("", own) or own == "__main__":
                continue
            if other not in order or own not in order:
                found.append(f"{path.relative_to(PACKAGE)}: {own}/{other} not in docs/internals.md's order")
            elif order[other] >= order[own]:
                found.append(f"{path.relative_to(PACKAGE)} ({own}) imports {module} (not below it)")
    return found


def test_every_import_follows_the_readme_import_order():
    """Every edgecnn module imports only layers strictly below its own, in docs/internals.md's order."""
    order = _layer_order()
    assert order["errors"] == 0 and order["cli"] == max(order.values()) and len(order) > 15
    found = _back_arrows(order)
    assert not found, "\n".join(sorted(set(found)))


def test_the_import_order_check_finds_a_back_arrow():
    order = _layer_order()
    swapped = {**order, "transforms": order["analysis"], "analysis": order["transforms"]}
    assert any("imports edgecnn.analysis" in f for f in _back_arrows(swapped))


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_no_module_imports_a_private_name_of_another_module():
    """Private names stay in their module, inside a package too (a package's own _modules are its own)."""
    found = [
        f"{path.relative_to(PACKAGE)} imports {name} from {module}"
        for path, tree in _modules()
        for module, names in _imports(tree, path)
        if module.startswith("edgecnn")
        for name in names
        if name.startswith("_") and name != "__version__" and not _is_module(f"{module}.{name}")
    ]
    assert not found, "\n".join(found)


def test_runtime_imports_nothing_above_errors():
    allowed = ("edgecnn.errors", "edgecnn.lazy", "edgecnn.runtime")
    found = [
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path, tree in _modules()
        if path.parent == PACKAGE / "runtime"
        for module, _ in _imports(tree, path)
        if module.startswith("edgecnn") and not module.startswith(allowed)
    ]
    assert not found, "\n".join(found)


def test_bench_and_train_use_only_the_public_export_api():
    found = [
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path, tree in _modules()
        if path.parent.name in ("bench", "train")
        for module, _ in _imports(tree, path)
        if module.startswith("edgecnn.export.")
    ]
    assert not found, "\n".join(found)


def test_no_function_of_edgecnn_is_longer_than_60_lines():
    long = [
        f"{path.relative_to(PACKAGE)}:{node.name} {node.end_lineno - node.lineno + 1} lines"
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 60
    ]
    assert not long, long


def test_every_reference_in_the_tables_resolves():
    for b in BACKENDS.values():
        assert isinstance(import_string(b.runner), type), b.runner
        for ref in (b.builder, b.ready):
            assert ref is None or callable(import_string(ref)), ref
        assert b.devices and set(b.runner_options) <= set(b.precisions)
    for p in PRECISIONS.values():
        assert p.onnx_step is None or callable(import_string(p.onnx_step))
    suffixes = [s for b in BACKENDS.values() for s in b.suffixes]
    assert len(suffixes) == len(set(suffixes))


def test_names_and_suffixes_come_from_the_rows():
    assert [
        precision_tag(p, a) for p, a in (("fp32", "u8"), ("fp16", "s8"), ("int8", "s8"), ("int8", "u8"))
    ] == [
        "fp32",
        "fp16",
        "int8",
        "int8u8",
    ]
    assert [file_label(p, "u8") for p in ("fp32", "fp16", "int8")] == ["", ".fp16", ".int8u8"]
    assert backend_for("a/m.xml").runtime == "openvino" and backend_for("m.plan").runtime == "tensorrt"
    assert backend_for(object()).runtime == "torch"
    assert get_backend("openvino").options_for("fp32") == {"precision": "f32"}
    assert get_backend("openvino").options_for("int8") == {"precision": "f32"}  # its float layers
    assert get_backend("openvino").options_for("bf16") == {"precision": "bf16"}
    with pytest.raises(BadArgumentError, match=r"cannot tell the runtime of m\.txt"):
        backend_for("m.txt")


def test_side_files_follow_the_artifact(tmp_path):
    xml, onnx = tmp_path / "m.xml", tmp_path / "m.onnx"
    for p in (xml, onnx, tmp_path / "m.bin"):
        p.write_text("x")
    assert get_backend("openvino").files(xml) == [tmp_path / "m.bin", xml]
    assert get_backend("onnxruntime").files(onnx) == [onnx]
    (tmp_path / "m.onnx.data").write_text("x")
    assert get_backend("onnxruntime").files(onnx) == [tmp_path / "m.onnx.data", onnx]


def copy_builder(onnx_path, artifact, *, options, input_shape, precision, out_dir):
    """A builder for the test's extra backend: its artifact is a copy of the ONNX under its own suffix."""
    shutil.copyfile(onnx_path, artifact)
    return {"copied_from": Path(onnx_path).name}


def test_a_new_backend_is_one_row(tmp_path, monkeypatch):
    """Export, verify, publish and bench a backend that exists only as a table row in this test."""
    from edgecnn.bench import BenchOptions, bench
    from edgecnn.export import ExportOptions, export

    row = Backend(
        runtime="ortcopy",
        module="onnxruntime",
        runner="edgecnn.runtime.ort:OrtRunner",
        install_hint="pip install onnxruntime",
        devices=("cpu",),
        target="copy",
        suffixes=(".onnxcopy",),
        builder=f"{__name__}:copy_builder",
    )
    monkeypatch.setitem(BACKENDS, row.runtime, row)
    monkeypatch.setitem(TARGETS, row.target, row)
    result = export("lenet5", ExportOptions(targets=("copy", "onnx"), out_dir=tmp_path))
    assert result.ok, [t.error for t in result.targets]
    copy_t, onnx_t = result.targets
    assert copy_t.path == str(tmp_path / "lenet5.onnxcopy") and copy_t.info == {"copied_from": "lenet5.onnx"}
    assert copy_t.parity[0].passed and copy_t.sha256 == onnx_t.sha256
    assert Path(copy_t.manifest).is_file()
    rows = bench([copy_t.path], BenchOptions(memory=False, min_iters=3, min_seconds=0.05, warmup_s=0.0)).rows
    assert rows[0].runtime == "ortcopy" and not rows[0].error, rows[0].error
    assert rows[0].latency.median_ms > 0 and rows[0].precision == "fp32"
    assert backend_for(copy_t.path) is row
    x = np.zeros((1, 1, 32, 32), np.float32)
    assert import_string(row.runner)(copy_t.path).run(x).shape == (1, 10)


def test_every_forward_pass_is_watched_through_one_helper():
    """Hooks that watch a forward pass go through `analysis.hooked` (registered and always removed);
    the one other hook is fake quantization, which changes a copy's inputs for good."""
    found = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}"
        for path, tree in _modules()
        if path.relative_to(PACKAGE) not in (Path("analysis.py"), Path("plan/scores.py"))
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr.startswith("register_forward")
    ]
    assert not found, found
