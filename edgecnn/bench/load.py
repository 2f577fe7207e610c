"""What else ran while we timed: CPU time used by other processes (and taken by the hypervisor).

A timing made while another process held a core is not this machine's speed; the load average
cannot tell, because it counts our own threads too.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

# Other processes using more than this many cores on average make a timing noisy
NOISY_CORES = 0.5


def _busy_seconds() -> float | None:
    """CPU seconds all cores spent busy (user, nice, system, irq, softirq, steal) since boot."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    except (OSError, ValueError, IndexError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class OtherLoad:
    """Cores used by other processes between `start()` and `stop()`; None where /proc/stat is not
    readable (then every timing counts as quiet)."""

    cores: float | None = None

    def start(self) -> OtherLoad:
        self._t, self._busy, self._own = time.perf_counter(), _busy_seconds(), _own_seconds()
        return self

    def stop(self) -> OtherLoad:
        busy, wall = _busy_seconds(), time.perf_counter() - self._t
        if busy is not None and self._busy is not None and wall > 0:
            others = (busy - self._busy) - (_own_seconds() - self._own)
            self.cores = max(0.0, others / wall)
        return self

    @property
    def noisy(self) -> bool:
        return self.cores is not None and self.cores > NOISY_CORES


def other_load_now(seconds: float = 0.3) -> OtherLoad:
    """Other processes' load over the next `seconds` (we sleep, so all of it is theirs)."""
    load = OtherLoad().start()
    time.sleep(seconds)
    return load.stop()
