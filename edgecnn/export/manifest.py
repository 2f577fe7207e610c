"""The JSON manifest written next to every artifact: what it is, where it came from, how it checked."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict
from pathlib import Path

from edgecnn.artifacts import atomic_output, package_versions
from edgecnn.runtime import backend_packages, get_target

FORMAT = "edgecnn-export/1"


def manifest_path(artifact: Path) -> Path:
    return Path(artifact).with_name(Path(artifact).name + ".json")


def read_manifest(artifact: str | Path) -> dict:
    """The manifest beside `artifact`, or {} when there is none (or it is unreadable)."""
    try:
        return json.loads(manifest_path(Path(artifact)).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def manifest_problem(artifact: str | Path) -> str | None:
    """None when the manifest beside `artifact` is absent or well formed; else one line naming it as
    corrupt (not JSON, not a manifest, or a field of the wrong type), never "no manifest"."""
    path = manifest_path(Path(artifact))
    if not path.is_file():
        return None
    try:
        body = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"its manifest {path.name} is corrupt ({type(e).__name__}); export it again"
    if not isinstance(body, dict) or not str(body.get("format", "")).startswith("edgecnn-export/"):
        return f"its manifest {path.name} is not an edgecnn export manifest; export it again"
    shape = (
        (body.get("input") or {}).get("shape", [1, 1, 1, 1])
        if isinstance(body.get("input"), dict | None)
        else None
    )
    files = body.get("files", [])
    if not (isinstance(shape, list) and len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape)):
        return f"its manifest {path.name} records no valid input shape (got {shape!r}); export it again"
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        return f"its manifest {path.name} has a corrupt file list; export it again"
    return None


def check_files(artifact: str | Path) -> str | None:
    """None when every file the manifest lists is there with its recorded size and sha256; else one
    line saying which is not, or that the manifest is corrupt (a manifest without a file list, from an
    older edgecnn, only checks that the files exist)."""
    from edgecnn.artifacts import sha256_file

    artifact = Path(artifact)
    problem = manifest_problem(artifact)
    if problem is not None:
        return problem
    files = read_manifest(artifact).get("files") or [{"path": artifact.name}]
    for entry in files:
        path = artifact.parent / str(entry.get("path", ""))
        if not path.is_file():
            return f"{path.name} is missing beside {artifact.name}"
        if "size_bytes" in entry and path.stat().st_size != entry["size_bytes"]:
            size = path.stat().st_size
            want = entry["size_bytes"]
            return f"{path.name} is {size} bytes, its manifest says {want} (cut short or replaced)"
        if "sha256" in entry and sha256_file(path) != entry["sha256"]:
            return f"{path.name} does not match the sha256 in its manifest (changed after export)"
    return None


def write_manifest(artifact: Path, manifest: dict) -> Path:
    """Written before the artifact is moved into place (`targets.publish`): a visible artifact always
    has one, and its per-file sha256 tells a complete artifact from one replaced or cut short."""
    path = manifest_path(artifact)
    body = {"format": FORMAT, "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), **manifest}
    with atomic_output(path, force=True) as tmp:
        tmp.write_text(json.dumps(body, indent=2) + "\n")
    return path


def target_manifest(res, job, result) -> dict:
    """The manifest of one published target (`res`, a TargetResult) of an export `job`."""
    loaded, preprocess, opts = job.loaded, job.preprocess, job.options
    return {
        "model": loaded.card.name,
        "source": result.source,
        "target": res.target,
        "runtime": get_target(res.target).runtime,
        "precision": res.precision,
        "weights": asdict(loaded.weights),
        "transforms": job.transforms,
        "recipe": loaded.recipe,
        "input": {
            "name": job.input_name,
            "shape": list(result.input_shape),
            "dynamic_batch": opts.dynamic_batch,
            "layout": "NCHW",
            "color": "grey" if loaded.in_chans == 1 else "RGB",
            "resize_size": preprocess.resize_size,
            "crop_size": list(job.size),
            # None: not known (an ONNX file exported without --mean / --std)
            "mean": list(preprocess.mean) if job.preprocessing_known else None,
            "std": list(preprocess.std) if job.preprocessing_known else None,
        },
        "output": {
            "name": job.output_name,
            "num_classes": loaded.num_classes,
            "class_names": (loaded.recipe or {}).get("class_names"),
            "task": loaded.card.task,
        },
        "onnx": result.onnx,
        "quantization": res.quantization,
        "backend": res.info,
        "versions": package_versions("onnx", "onnxslim", *backend_packages()),
        "parity": [p.to_dict() for p in res.parity],
        "verified": res.status == "ok",
        "file": {"path": Path(res.path).name, "size_bytes": res.size_bytes, "sha256": res.sha256},
        "seconds": round(res.seconds, 3),
    }
