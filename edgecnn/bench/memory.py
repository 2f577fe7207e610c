"""Peak memory of one (model, runtime, batch), measured in a fresh process.

In-process numbers would include every other runtime and model loaded before; a fresh interpreter
imports only the runtime under test, records its resident set as the baseline, then loads the
artifact and runs it. The figure reported is peak RSS (VmHWM) minus that baseline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_PROBE = "edgecnn.bench._memprobe"


def rss_bytes() -> tuple[int | None, int | None]:
    """(current RSS, peak RSS) of this process from /proc; (None, None) where /proc is missing."""
    try:
        fields = dict(
            line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line
        )
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak *= 1 if sys.platform == "darwin" else 1024
        return None, peak


def measure_memory(job: dict, *, timeout: float = 600):
    """Run the probe on `job` (see _memprobe): its measurements, or why it failed, as a schema.Memory."""
    from edgecnn.bench.schema import Memory

    proc = subprocess.run(
        [sys.executable, "-m", _PROBE, json.dumps(job)], capture_output=True, text=True, timeout=timeout
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Memory(error=f"memory probe failed: {tail}")
    return Memory(**json.loads(lines[-1]))
