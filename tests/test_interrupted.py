"""A compress killed as it publishes re-runs as it was typed: complete, no --force, nothing hidden
left behind (export's kills are in test_export.py)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

ARGS = ["compress", "lenet5", "--speedup", "1.05", "--distill-epochs", "0", "--duration", "0.3"]
ARGS += ["--test-images", "64", "--calib-images", "8", "-o", "out"]

# SIGKILL right after the n-th file is published in `out` (a rename onto a visible name), as a kill
# from outside at that moment would (n = 0: never). The plan is fixed (one low-rank layer): what is
# tested is publishing and resuming, not whether this machine reaches a speed-up.
KILLER = """
import os, signal, sys
from pathlib import Path
import edgecnn.compress.api as api
from edgecnn.plan import Plan
from edgecnn.plan.api import LayerChoice
choice = LayerChoice("classifier.3", "lowrank 16", "lowrank", 16, 1.0, 0.5, 0.1, 1, 1)
plan = Plan("onnxruntime", "cpu", None, 1, (1, 32, 32), 5.0, 4.0, 4.0, [choice], 8, 0, 0)
api._plan = lambda *a: (None, plan)
import edgecnn.compress.rival as rival
rival.rivals = lambda *a: []  # nothing recovered beside the fixed plan
out, n = Path("out").absolute(), int(sys.argv[1])
real_replace, seen = os.replace, [0]
def replace(src, dst, *a, **k):
    real_replace(src, dst, *a, **k)
    seen[0] += Path(dst).absolute().parent == out and not Path(dst).name.startswith(".")
    if n and seen[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
from edgecnn.cli import main
sys.argv = ["edgecnn", *sys.argv[2:]]
main()
"""


def _edgecnn(cwd, kill_after: int = 0) -> subprocess.CompletedProcess:
    head = [sys.executable, "-c", KILLER, str(kill_after)]
    env = {**os.environ, "EDGECNN_CACHE": str(Path(cwd) / "cache")}
    return subprocess.run([*head, *ARGS], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_a_killed_compress_re_runs_as_typed(tmp_path):
    """Killed once its student file is out, then (re-run, resuming) once the original's artifact is
    published but not the student's: the next run, as typed, replaces what they left and completes."""
    out = tmp_path / "out"
    for kill_after in (1, 3):
        killed = _edgecnn(tmp_path, kill_after)
        assert killed.returncode == -signal.SIGKILL, (kill_after, killed.stderr[-2000:])
        assert (out / "lenet5.compressed-onnxruntime.safetensors").is_file()
        assert not (out / "compress.json").exists()
    again = _edgecnn(tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    report = json.loads((out / "compress.json").read_text())
    assert (tmp_path / report["student_path"]).is_file() and report["measured_speedup"] > 0
    assert all((tmp_path / a).is_file() for a in report["artifacts"].values())
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    refused = _edgecnn(tmp_path)  # complete: now it is the user's, replaced only with --force
    assert refused.returncode == 2 and "already exists; pass --force" in refused.stderr
