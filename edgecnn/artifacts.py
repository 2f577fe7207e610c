"""The I/O helpers every layer shares: atomic writes, the overwrite check, file hashes, versions.

Writing artifacts never leaves a half-written file or silently replaces a good one.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgecnn.errors import EdgeCNNError


class ArtifactExistsError(EdgeCNNError):
    pass


def check_writable(path: str | os.PathLike, *, force: bool) -> None:
    """Refuse to replace an existing artifact unless forced; called before long work, not after it."""
    if Path(path).exists() and not force:
        raise ArtifactExistsError(f"{path} already exists; pass --force to overwrite it")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`, on failure removed.

    The rename is atomic on one filesystem, so readers see either the old file or the complete new one.
    """
    path = Path(path)
    check_writable(path, force=force)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; artifacts get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def package_versions(*names: str) -> dict[str, str | None]:
    """edgecnn's version and each named distribution's (None when it is not installed)."""
    from edgecnn import __version__

    out: dict[str, str | None] = {"edgecnn": __version__}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out
