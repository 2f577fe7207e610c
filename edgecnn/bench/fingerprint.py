"""What machine a result came from: CPU, ISA flags, RAM, GPU, OS, runtime versions, threads.

Latency tables are only comparable across machines when each row carries this.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

# The ISA features that decide which kernels runtimes pick (VNNI/AMX for int8, bf16, AVX-512).
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "sve",
)


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model") and model in ("", platform.machine(), platform.processor()):
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, flags


def _ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gpu() -> dict | None:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    info = {"name": props.name, "memory_bytes": props.total_memory, "cuda": torch.version.cuda}
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            info["driver"] = out.stdout.strip().splitlines()[0] if out.stdout.strip() else None
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def machine_fingerprint(threads: int | None = None) -> dict:
    from edgecnn.artifacts import package_versions
    from edgecnn.runtime import backend_packages

    model, flags = _cpuinfo()
    torch = sys.modules.get("torch")
    gpu = _gpu()
    fp = {
        "cpu": model,
        "logical_cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "isa": [f for f in ISA_FLAGS if f in flags],
        "ram_bytes": _ram_bytes(),
        "gpu": gpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": package_versions(*backend_packages()),
        "threads": {
            "requested": threads,
            "torch": torch.get_num_threads() if torch is not None else None,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        },
    }
    ident = f"{fp['cpu']}|{fp['logical_cores']}|{(gpu or {}).get('name')}"
    fp["id"] = hashlib.sha1(ident.encode()).hexdigest()[:8]
    short = model.replace("(R)", "").replace("(TM)", "").replace(" CPU", "").split(" @")[0]
    fp["label"] = f"{short} {fp['logical_cores']}c" + (f" + {gpu['name']}" if gpu else "")
    return fp
