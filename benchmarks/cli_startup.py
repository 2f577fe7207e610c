"""How long the quick commands take, as a user types them: each in a fresh process, median of N.

    .venv/bin/python benchmarks/cli_startup.py [--runs 5]

`inspect` answers a zoo model's default configuration from the stored layer tables; the baseline is
the same model at another input size, which builds it in torch (torch + torchvision imports and a
meta-device forward), timed in the same run. Limits (issue 15): `inspect resnet50` and `zoo` under
1.5 s, `--help` under 0.5 s, on the 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

EDGECNN = str(Path(sys.executable).with_name("edgecnn"))
COMMANDS = {  # label: (arguments, limit in seconds or None for the baseline)
    "edgecnn --help": (["--help"], 0.5),
    "edgecnn zoo": (["zoo"], 1.5),
    "edgecnn inspect resnet50": (["inspect", "resnet50"], 1.5),
    "edgecnn inspect resnet50 --input-size 192 (live, baseline)": (
        ["inspect", "resnet50", "--input-size", "192"],
        None,
    ),
}


def seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([EDGECNN, *args], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {label: [] for label in COMMANDS}
    for _ in range(args.runs):  # interleaved: a burst of load on a shared machine hits every command
        for label, (argv, _limit) in COMMANDS.items():
            times[label].append(seconds(argv))
    baseline = statistics.median(times[next(reversed(COMMANDS))])
    failed = 0
    print(f"median of {args.runs} runs, each in a fresh process")
    for label, (_argv, limit) in COMMANDS.items():
        median = statistics.median(times[label])
        verdict = "" if limit is None else ("  ok" if median < limit else "  OVER") + f" (limit {limit} s)"
        failed += limit is not None and median >= limit
        print(f"{median:6.2f} s  {baseline / median:5.1f}x faster than live  {label}{verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
