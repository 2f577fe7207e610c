"""Does pruning as a planner candidate beat both the plan without it and uniform Torch-Pruning?

    .venv/bin/python benchmarks/prune_candidates.py [--models resnet18,resnet50]
        [--runtimes openvino,onnxruntime] [--speedups 2,3] [--epochs 5] [--distill-epochs 2]

Each model is trained on the bundled digits at 64x64 (`reference_model`, cached; SGD lr 0.02 as
benchmarks/strongest_baseline.py does). Per runtime and requested speed-up, three students, each
distilled as compress distils (same epochs, lr, BN re-estimation, feature matching), every top-1 on
the same 1,000 held-out test digits:
- plan: `compress --speedup S` with every candidate kind (pruning included), which also recovers
  the plan made without pruning (where the plan prunes) and uniform pruning at the least ratio that
  meets the same request, and ships the student with the lowest validation loss
  (`edgecnn.compress.rival`; each student's test top-1 in the last column);
- no prune: `compress --speedup S --candidates separable,bottleneck,lowrank` (the plan before pruning);
- uniform: Torch-Pruning's uniform pruning ratio (group L2 importance, channel counts rounded to 8:
  `convert --prune R`) at the ratio whose latency is closest to the plan's student.
The original, both plans' students and uniform pruning at every ratio of --ratios are timed in one
interleaved run on the runtime (each block's fast time, as compress times; the runtime's default
float math, as compress's baseline), so every speed-up below is over the original in that run.
Both plans share one latency cache, cold at the start: the plans after the first time nothing new.
Results: benchmarks/results/prune_candidates.json and .md, with the machine they ran on.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from strongest_baseline import machine, within_reach, write_report

WITHOUT_PRUNE = "separable,bottleneck,lowrank"
RATIOS = "0.1,0.15,0.2,0.25,0.3,0.35,0.4,0.45,0.5,0.55,0.6,0.65,0.7"


def plan_row(model, runtime, speedup, kinds, ref, common, work) -> dict:
    """compress at `speedup` with the candidate kinds `kinds` (None: all): what it measured and scored."""
    from edgecnn.compress import CompressOptions, compress
    from edgecnn.plan.candidates import Grid

    name = "plan" if kinds is None else "no prune"
    grid = Grid() if kinds is None else Grid().with_candidates(kinds)
    out = work / f"{model}-{runtime}-{speedup}-{name.replace(' ', '')}"

    def run(s):
        return compress(
            model, CompressOptions(runtime=runtime, speedup=s, grid=grid, out_dir=out, **common), loaded=ref
        )

    t0 = time.time()
    r, asked, best = within_reach(run, speedup)
    kinds_used = sorted({layer.kind for layer in r.plan.layers if layer.kind != "keep"})
    return {
        "variant": name,
        "asked": asked,
        "reach": best,
        "compress_speedup": r.measured_speedup,
        "predicted": r.plan.predicted_speedup,
        "latencies_cached": r.plan.latencies_cached,
        "kinds": kinds_used,
        # where compress measured the plan against uniform pruning at the same request (compress.rival)
        "structure": brief(r.structure.to_dict()) if r.structure else None,
        "top1": r.top1[1],
        "original_top1": r.top1[0],
        "test_set": r.test_set,
        "macs": r.macs[1],
        "artifact": r.artifacts["student"],
        "original_artifact": r.artifacts["original"],
        "seconds": round(time.time() - t0),
    }


def uniform_students(ref, ratios, size, runtime, work) -> dict[float, tuple]:
    """{ratio: (ConvertResult, its artifact for `runtime`)}: uniform pruning at each ratio, BN kept as
    compress keeps it in a student, exported as compress exports one (weights do not change latency)."""
    from edgecnn.export import ExportOptions, export
    from edgecnn.runtime import get_backend
    from edgecnn.transforms import convert, save_with_recipe

    students = {}
    for ratio in ratios:
        student = convert(ref, fold_bn=False, prune=ratio, input_size=size)
        path = work / f"uniform-{ratio}.safetensors"
        save_with_recipe(student.model, student.recipe, path, force=True)
        eo = ExportOptions(targets=(get_backend(runtime).target,), out_dir=work, input_size=None, force=True)
        (target,) = export(str(path), eo).targets
        if not target.ok:
            raise RuntimeError(f"uniform pruning {ratio}: export failed: {target.error}")
        students[ratio] = (student, target.path)
    return students


def time_all(runtime, artifacts: dict, chw) -> dict[str, float]:
    """{name: ms} of every artifact, timed in one interleaved run under the runtime's default math."""
    import numpy as np

    from edgecnn.bench.latency import time_paired
    from edgecnn.runtime import get_backend, get_runner

    backend = get_backend(runtime)
    options = backend.timing_options("fp32", "default")
    runners = {k: get_runner(runtime, p, device="cpu", **options) for k, p in artifacts.items()}
    x = np.random.default_rng(0).standard_normal((1, *chw)).astype(np.float32)
    fns = [lambda r=r: r.run(x) for r in runners.values()]
    times = time_paired(fns, batch=1, rounds=6, block_s=0.5)
    return {name: times.typical_ms(i) for i, name in enumerate(runners)}


def distill_uniform(ref, student, splits, distill_epochs: int) -> float:
    """Test top-1 of `student` distilled from `ref` exactly as compress distils its students."""
    from edgecnn.compress import CompressOptions
    from edgecnn.train import DistillOptions, distill, train_options

    opts = CompressOptions(distill_epochs=distill_epochs)
    train = train_options(
        "compress",
        epochs=distill_epochs,
        batch_size=opts.batch_size,
        lr=opts.lr,
        seed=opts.seed,
        device="cpu",
    )
    options = DistillOptions(train=train, bn_batches=opts.bn_batches)
    return distill(ref, student, splits.source, options, splits=splits).student_test_top1


def runtime_rows(model, runtime, ref, splits, args, work) -> list[dict]:
    """Both plans at every speed-up, uniform pruning at the ratio closest to each plan's latency,
    all timed in one run; one row per (speed-up, variant)."""
    size = (args.size, args.size)
    common = dict(data="digits", input_size=size, distill_epochs=args.distill_epochs, force=True)
    common["cache_dir"] = work / f"cache-{model}-{runtime}"  # cold for the first plan of this pair
    rows = []
    for speedup in args.speedups:
        for kinds in (None, WITHOUT_PRUNE):
            rows.append({"model": model, "runtime": runtime, "speedup": speedup})
            rows[-1].update(plan_row(model, runtime, speedup, kinds, ref, common, work))
            print(json.dumps(rows[-1]), flush=True)
    ratios = [float(r) for r in args.ratios.split(",")]
    uniform = uniform_students(ref, ratios, size, runtime, work / f"uniform-{model}-{runtime}")
    artifacts = {"original": rows[0]["original_artifact"]}
    artifacts.update({f"{r['speedup']}|{r['variant']}": r["artifact"] for r in rows})
    artifacts.update({f"uniform|{ratio}": path for ratio, (_, path) in uniform.items()})
    ms = time_all(runtime, artifacts, (ref.in_chans, *size))
    for row in rows:
        row["ms"] = ms[f"{row['speedup']}|{row['variant']}"]
        row["original_ms"] = ms["original"]
        row["speedup_here"] = ms["original"] / row["ms"]
    for speedup in args.speedups:
        plan_ms = next(r["ms"] for r in rows if r["speedup"] == speedup and r["variant"] == "plan")
        ratio = min(ratios, key=lambda q: abs(ms[f"uniform|{q}"] - plan_ms))
        student = uniform[ratio][0]
        t0 = time.time()
        top1 = distill_uniform(ref, student, splits, args.distill_epochs)
        row = {"model": model, "runtime": runtime, "speedup": speedup, "variant": "uniform", "ratio": ratio}
        row.update(ms=ms[f"uniform|{ratio}"], original_ms=ms["original"], top1=top1, macs=student.macs_after)
        row.update(speedup_here=ms["original"] / row["ms"], seconds=round(time.time() - t0))
        row["ladder"] = {str(q): ms["original"] / ms[f"uniform|{q}"] for q in ratios}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def verdicts(rows: list[dict]) -> list[str]:
    """Per (model, runtime, speed-up): the plan's top-1 against the better of no-prune and uniform."""
    lines = []
    keys = dict.fromkeys((r["model"], r["runtime"], r["speedup"]) for r in rows)
    for model, runtime, speedup in keys:
        by = {
            r["variant"]: r
            for r in rows
            if (r["model"], r["runtime"], r["speedup"]) == (model, runtime, speedup)
        }
        if len(by) < 3:
            continue
        best = max(by["no prune"]["top1"], by["uniform"]["top1"])
        gap = by["plan"]["top1"] - best
        lines.append(
            f"- {model} {runtime} {speedup:g}x: plan {by['plan']['top1']:.2f}% vs the better of no prune and "
            f"uniform {best:.2f}% ({gap:+.2f} points)"
        )
    return lines


def brief(structure: dict) -> dict:
    """compress.json's `structure` less each contender's whole plan (the shipped one is the row's own;
    the layers of all three made the results file 20 times larger): its uniform ratio kept."""
    contenders = [
        {**{k: v for k, v in c.items() if k != "plan"}, "ratio": c["plan"]["uniform"]}
        for c in structure["contenders"]
    ]
    return {**structure, "contenders": contenders}


def shipped_of(structure: dict) -> tuple[str, str]:
    """(the contender compress shipped, each contender's test top-1 as "plan 94.0 / ...")."""
    named = {}
    for c in structure["contenders"]:
        named[c["kind"]] = c["kind"] + (f" {c['ratio']:.0%}" if c["ratio"] else "")
    tops = " / ".join(f"{named[c['kind']]} {c['test_top1']:.1f}" for c in structure["contenders"])
    return named[structure["shipped"]], tops


def markdown(report: dict) -> str:
    rows = report["rows"]
    test_set = next((r["test_set"] for r in rows if "test_set" in r), "?")
    lines = [f"Machine: {report['machine']}. Command: `{report['command']}`.", ""]
    lines += [
        f"Test top-1 on {test_set}; every student distilled {report['distill_epochs']} epochs as compress "
        "distils. `ms` and `here` (speed-up over the original) are from one interleaved timing run per "
        "model and runtime, at the runtime's default float math; `compress` is compress's own "
        "end-to-end figure.",
        "",
        "| model | runtime | asked | variant | ms | here | compress | top-1 | what it chose |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        asked = f"{r['speedup']:g}x" + (f" ({r['asked']:.2f}x asked)" if r.get("reach") else "")
        compress = f"{r['compress_speedup']:.2f}x" if "compress_speedup" in r else "-"
        chose = ", ".join(r["kinds"]) if "kinds" in r else f"{r['ratio']:.0%} of channels removed"
        structure = r.get("structure")
        if structure:  # compress recovered the plan and its rivals alike, and kept one
            shipped, tops = shipped_of(structure)
            chose += f"; shipped {shipped} ({tops} on test; chosen on validation)"
        lines.append(
            f"| {r['model']} | {r['runtime']} | {asked} | {r['variant']} | {r['ms']:.2f} | "
            f"{r['speedup_here']:.2f}x | {compress} | {r['top1']:.2f} | {chose} |"
        )
    return "\n".join([*lines, "", *verdicts(rows)]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,resnet50")
    parser.add_argument("--runtimes", default="openvino,onnxruntime")
    parser.add_argument("--speedups", type=lambda s: [float(x) for x in s.split(",")], default=[2.0, 3.0])
    parser.add_argument("--ratios", default=RATIOS, help="uniform pruning ratios timed (fraction removed)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--distill-epochs", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/prune_candidates")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from edgecnn.data import Preprocess
    from edgecnn.train.api import load_splits, reference_model

    command = " ".join(["benchmarks/prune_candidates.py", *sys.argv[1:]])
    report = {"machine": machine(), "command": command, "distill_epochs": args.distill_epochs, "rows": []}
    print(report["machine"], flush=True)
    with tempfile.TemporaryDirectory(prefix="edgecnn-prune-") as tmp:
        for model in args.models.split(","):
            t0 = time.time()
            ref, info = reference_model(
                model, "digits", input_size=(args.size,) * 2, epochs=args.epochs, lr=0.02
            )
            print(
                f"{model}: reference ready ({info.get('test_top1', '?')}% test) in {time.time() - t0:.0f} s"
            )
            splits = load_splits("digits", Preprocess.for_model(ref.card, input_size=(args.size,) * 2))
            for runtime in args.runtimes.split(","):
                report["rows"] += runtime_rows(model, runtime, ref, splits, args, Path(tmp))
                write_report(report, Path(args.out), markdown)  # an interrupted run keeps what ran
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
