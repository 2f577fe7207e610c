"""Child process of `measure_memory`: import the runtime, baseline, load, run, report peak (JSON)."""

from __future__ import annotations

import json
import sys

import numpy as np


def main(job: dict) -> dict:
    from edgecnn.bench.memory import rss_bytes
    from edgecnn.lazy import import_string
    from edgecnn.runtime import get_backend, get_runner, require

    runtime = job["runtime"]
    require(runtime)  # the backend and its runner are imported before the baseline, whichever it is
    import_string(get_backend(runtime).runner)
    baseline, _ = rss_bytes()
    artifact = job["artifact"]
    if artifact is None:  # an in-memory model: rebuild it from its source
        from edgecnn.transforms import load_source
        from edgecnn.zoo.external import trusting

        source = job["source"]
        with trusting(source.get("trust", False)):
            artifact = load_source(source["source"], source.get("weights")).module
    options = {k: v for k, v in job.get("options", {}).items() if k != "compile"}
    runner = get_runner(
        runtime, artifact, device=job.get("device", "cpu"), threads=job.get("threads"), **options
    )
    x = np.random.default_rng(0).standard_normal(job["input_shape"]).astype(np.float32)
    for _ in range(job.get("iterations", 5)):
        runner.run(x)
    current, peak = rss_bytes()
    out = {"baseline_rss_bytes": baseline, "peak_rss_bytes": peak, "rss_bytes": current}
    out["peak_over_baseline_bytes"] = peak - baseline if baseline is not None and peak is not None else None
    torch = sys.modules.get("torch")
    if job.get("device") == "cuda" and torch is not None and torch.cuda.is_available():
        out["peak_gpu_bytes"] = torch.cuda.max_memory_allocated()
    return out


if __name__ == "__main__":
    try:
        print(json.dumps(main(json.loads(sys.argv[1]))))
    except Exception as e:  # the parent turns this into the row's error
        print(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        sys.exit(1)
