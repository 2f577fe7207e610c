"""The JSON manifest written next to every artifact: what it is, where it came from, how it checked."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
from pathlib import Path

from edgecnn import __version__
from edgecnn.artifacts import atomic_output

FORMAT = "edgecnn-export/1"


def package_versions(*names: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {"edgecnn": __version__}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def manifest_path(artifact: Path) -> Path:
    return Path(artifact).with_name(Path(artifact).name + ".json")


def write_manifest(artifact: Path, manifest: dict) -> Path:
    """Written after the artifact is in place, so a manifest means the artifact is complete."""
    path = manifest_path(artifact)
    body = {"format": FORMAT, "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), **manifest}
    with atomic_output(path, force=True) as tmp:
        tmp.write_text(json.dumps(body, indent=2) + "\n")
    return path
