"""Every `edgecnn ...` command in README.md and docs/, as written, so the docs and the CLI cannot drift.

The README's walkthrough runs first, then the docs pages in reading order (models, convert, export,
bench, compress, train, errors): later examples use files earlier ones wrote. Python blocks are
checked for imports that no longer resolve.

The commands run in order in one temporary folder, with the files they expect made first (image
folders for `~/imagenet/val` and friends, a checkpoint, an old result file). To keep the suite short
they run small: ResNet-50 becomes ResNet-18 (ResNet-34 in convert), models at 32x32, one epoch
(train: on 120 digit-sized images, not the 5,000 digits), batch 1, top-1 on at most 50 images,
benchmarks timed for 0.05 s without the memory probe or verifying their on-the-fly exports
(export's own examples verify). The Errors section's commands
must print the error the README shows, each in a folder of its own. `compress`, `pipeline` and
`distill`, and `train` on data the test does not have, are parsed by the CLI (every option and
value checked) but not run: each takes minutes at any size, and their flows run end to end in
test_plan.py and test_train.py; the distilled student the next example exports is the converted one.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from _cli import run_cli
from PIL import Image

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
DOCS = ["models", "convert", "export", "bench", "compress", "train", "errors", "internals"]
PAGES = [README, *(ROOT / "docs" / f"{name}.md" for name in DOCS)]
PARSE_ONLY = {"distill", "pipeline", "compress"}
FIXED_SIZE = {"lenet5", "alexnet2012"}  # models that take no --input-size
SMALL = ("--input-size", "32")
FAST_BENCH = (
    *("--warmup", "0.05", "--duration", "0.05", "--iterations", "3", "--no-memory", "--no-verify"),
    *("--data-limit", "50"),
)
PATHS = {  # README path -> where it is here, after the renames below
    "~/imagenet/val": "val",
    "~/data/flowers": "flowers",
    "export/resnet18/resnet18.int8u8.onnx": "export/resnet18/resnet18.32x32.int8u8.onnx",
}
# ResNet-50 is ResNet-18 here, but in `convert`, whose default output would then be the one the
# README's next `convert resnet18` writes.
STAND_IN = {"convert": "resnet34"}
SHORTER = {"--epochs": "1", "--batch": "1"}  # option -> the value it takes here
TRAIN_DATA = {"digits": "digits_small"}  # ten classes of twelve 28x28 grey images, made below


def readme_commands() -> list[tuple[str, str, str | None]]:
    """(page:line, command, the error line the page shows after it or None), in reading order."""
    return [c for page in PAGES for c in _page_commands(page)]


def _page_commands(page: Path) -> list[tuple[str, str, str | None]]:
    lines, out, fence = page.read_text().splitlines(), [], False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            fence = not fence
        elif fence and re.match(r"(\$ )?edgecnn ", line):
            start, command = i + 1, line
            while command.endswith("\\"):
                i += 1
                command = command[:-1] + lines[i].strip()
            expected = None
            if command.startswith("$ "):
                command = command[2:]
                expected = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].startswith("error:") else None
            out.append((f"{page.relative_to(ROOT)}:{start}", command, expected))
        i += 1
    return out


def argv(command: str) -> list[str]:
    """The command's arguments, without its comment and its `[--optional]` placeholders."""
    command = re.sub(r" \[--[^\]]*\]", "", command)
    return shlex.split(command, comments=True)[1:]


def shrink(args: list[str]) -> list[str]:
    """The same command, small: ResNet-50 -> ResNet-18, 32x32, one epoch, 16 calibration images,
    batch 1, short benchmarks, local data."""
    verb = args[0]
    if verb in ("convert", "export", "bench"):
        args = [a.replace("resnet50", STAND_IN.get(verb, "resnet18")) for a in args]
        first = args[1]
        if first not in FIXED_SIZE and "." not in first and "--input-size" not in args:
            args += SMALL
        if "--calib" in args and "--calib-size" not in args:
            args += ("--calib-size", "16")
    args = [PATHS.get(a, a) for a in args]
    if verb == "train":
        args = [TRAIN_DATA.get(a, a) for a in args]
    args = [SHORTER.get(args[i - 1], a) if i else a for i, a in enumerate(args)]
    return args + list(FAST_BENCH) if verb == "bench" else args


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, lenet_weights):
    import torch
    from safetensors.torch import save_file

    from edgecnn.zoo import load_model

    root = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "examples", root / "examples")  # the README's own network (file.py:function)
    rng = np.random.default_rng(0)
    folders = (("val", 3, 6, 3), ("flowers", 3, 6, 3), ("errors/one_class_folder", 1, 6, 3))
    for folder, classes, per, chans in (*folders, ("digits_small", 10, 12, 1)):
        for c in range(classes):
            (root / folder / f"c{c}").mkdir(parents=True)
            for k in range(per):
                shape = (40, 40, 3) if chans == 3 else (28, 28)
                Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(
                    root / folder / f"c{c}/{k}.png"
                )
    torch.manual_seed(0)
    torch.save(load_model(STAND_IN["convert"]).module.state_dict(), root / "ckpt.pth")
    trained = root / "export/lenet5/lenet5.trained.safetensors"
    trained.parent.mkdir(parents=True)
    save_file(torch.load(lenet_weights, weights_only=True), str(trained))

    old = {"schema": "edgecnn-bench", "version": 2, "machine": {}, "rows": []}
    (root / "errors/old.json").write_text(json.dumps(old))
    shutil.copy(root / "errors/old.json", root / "errors/new.json")
    return root


def test_the_readme_has_the_commands_this_test_expects():
    verbs = {argv(c)[0] for _, c, _ in readme_commands()}
    assert {"zoo", "inspect", "convert", "export", "bench", "compare", "plot", "compress", "train"} <= verbs
    assert sum(e is not None for _, _, e in readme_commands()) == 6  # the Errors section


def test_every_readme_command_runs_as_written(workdir):
    from typer.main import get_command

    from edgecnn.cli import app
    from edgecnn.runtime import available

    group = get_command(app)
    for line, command, expected in readme_commands():
        args = argv(command)
        where = f"{line}: {command}"
        if expected is not None:
            r = run_cli(*args, cwd=workdir / "errors")  # each error example stands alone
            shown = expected.split("...")[0].rstrip(": ")
            assert r.returncode in (1, 2) and shown in r.stderr, f"{where}\n{r.stderr}"
            continue
        if args[0] in PARSE_ONLY or (args[0] == "train" and "digits" not in args):
            parent = group.make_context("edgecnn", [args[0]])
            sub = group.get_command(parent, args[0])
            sub.make_context(args[0], shrink(args)[1:], parent=parent)  # raises on a bad option or value
            if args[0] == "distill":  # what the next example exports: the student stands in for it
                student = workdir / args[2]
                shutil.copy(
                    student, student.with_name(student.name.replace(".safetensors", ".distilled.safetensors"))
                )
            continue
        r = run_cli(*shrink(args), cwd=workdir)
        if "tensorrt" in args and not available("tensorrt"):
            assert r.returncode == 1 and "tensorrt is not installed" in r.stderr, f"{where}\n{r.stderr}"
            continue
        assert r.returncode == 0, f"{where}\n{r.stderr[-2000:]}"


def test_every_python_block_imports_what_exists():
    """The names each ```python block of the README and docs/ imports from edgecnn exist (the blocks
    themselves train and compress for minutes: their flows run in test_plan.py and test_train.py)."""
    import ast
    import importlib

    for page in PAGES:
        blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
        for block in blocks:
            for node in ast.walk(ast.parse(block)):
                if isinstance(node, ast.ImportFrom) and node.module.startswith("edgecnn"):
                    module = importlib.import_module(node.module)
                    missing = [a.name for a in node.names if not hasattr(module, a.name)]
                    assert not missing, f"{page.name}: {node.module} has no {missing}"


def test_the_readme_is_a_guide_and_every_page_it_links_exists():
    text = README.read_text()
    assert len(text.splitlines()) < 300
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        assert (ROOT / link).exists(), link


def test_benchmarks_results_hold_one_current_result_per_script_each_listed():
    """benchmarks/results/: every file belongs to a script (its name starts with the script's), at
    most two files a script, and benchmarks/README.md names each file and each script."""
    bench = ROOT / "benchmarks"
    index = (bench / "README.md").read_text()
    scripts = [p.stem for p in bench.glob("*.py")]
    owners: dict[str, list[str]] = {}
    for f in sorted(p.name for p in (bench / "results").iterdir()):
        mine = [s for s in scripts if f.startswith(s)]
        assert mine, f"results/{f} belongs to no script"
        owners.setdefault(max(mine, key=len), []).append(f)
        assert f"`results/{f}`" in index, f"benchmarks/README.md does not list results/{f}"
    assert all(len(files) <= 2 for files in owners.values()), owners
    assert all(f"`{s}.py`" in index for s in scripts), scripts
