"""The I/O helpers every layer shares: atomic writes, the overwrite check, file hashes, versions.

Writing artifacts never leaves a half-written file or silently replaces a good one.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgecnn.errors import EdgeCNNError

log = logging.getLogger(__name__)


class ArtifactExistsError(EdgeCNNError):
    pass


class OutputLocationError(EdgeCNNError):
    """The output folder cannot be written (read-only, not a folder, no permission)."""


def cache_dir() -> Path:
    """$EDGECNN_CACHE, else $XDG_CACHE_HOME/edgecnn, else ~/.cache/edgecnn."""
    if os.environ.get("EDGECNN_CACHE"):
        return Path(os.environ["EDGECNN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgecnn"


def check_writable(path: str | os.PathLike, *, force: bool) -> None:
    """Refuse to replace an existing artifact unless forced, or to start work whose output cannot be
    written (a folder in its place, a name too long for the filesystem); called before long work."""
    path = Path(path)
    check_name_length(path)  # first: a name too long cannot even be looked up
    if path.is_dir():
        raise OutputLocationError(f"{path} is a folder; give a file name to write (inside it, or elsewhere)")
    if path.exists() and not force:
        raise ArtifactExistsError(f"{path} already exists; pass --force to overwrite it")
    check_dir_writable(path.parent)


def check_name_length(path: str | os.PathLike) -> None:
    """Each part of `path` and the whole fit the filesystem's limits (NAME_MAX, PATH_MAX): checked
    before work, so a legal-looking -o never fails after it."""
    path = Path(path).absolute()
    existing = next((p for p in path.parents if _exists(p)), Path("/"))
    try:
        name_max, path_max = os.pathconf(existing, "PC_NAME_MAX"), os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    long = next((p for p in path.parts if len(os.fsencode(p)) > name_max), None)
    if long is not None:
        raise OutputLocationError(
            f"the name {long[:40]}... is {len(os.fsencode(long))} bytes; this filesystem allows {name_max}: "
            "choose a shorter -o"
        )
    if len(os.fsencode(str(path))) >= path_max:
        raise OutputLocationError(
            f"{str(path)[:60]}... is longer than this filesystem allows; choose a shorter -o"
        )


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long to look up
        return False


def check_dir_writable(folder: str | os.PathLike) -> None:
    """The folder (or, where it does not exist yet, its nearest existing parent, where it would be
    made) can take new files."""
    folder = Path(folder).absolute()
    check_name_length(folder)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise OutputLocationError(f"cannot write into {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputLocationError(
            f"cannot write into {folder}: {existing} is read-only or not writable by you; choose another -o"
        )
    try:  # access() says yes for root on /proc and /sys: a file that vanishes on close proves it
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise OutputLocationError(
            f"cannot write into {folder}: {e.strerror or e}; choose another -o"
        ) from None


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`, on failure removed.

    The rename is atomic on one filesystem, so readers see either the old file or the complete new one.
    """
    path = Path(path)
    check_writable(path, force=force)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A short hidden name, whatever the length of `path`'s (a legal name stays legal); the writer's pid
    # is in it, so `sweep_stale` removes what a killed writer left.
    fd, tmp = tempfile.mkstemp(prefix=f".{os.getpid()}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes 0600 (and some writers recreate the file): set the usual permissions last
        os.chmod(tmp_path, 0o666 & ~umask)
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


WORK_PREFIX = ".export-"  # hidden work folders: f"{WORK_PREFIX}{pid}-{random}"


def work_prefix() -> str:
    """The prefix of this process's hidden work folders (its pid marks them for `sweep_stale`)."""
    return f"{WORK_PREFIX}{os.getpid()}-"


def sweep_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove the hidden work folders and `.partial` files in `folder` whose writer process is gone
    (killed mid-export: SIGKILL leaves no chance to clean up); those of running processes stay."""
    import shutil

    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        pid = _writer(path)
        if pid is None or pid == os.getpid() or _alive(pid):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _writer(path: Path) -> int | None:
    """The pid in a work folder's or partial file's name, None for anything else."""
    name = path.name
    if name.startswith(WORK_PREFIX):
        part = name[len(WORK_PREFIX) :].split("-", 1)[0]
    elif name.startswith(".") and name.endswith(".partial"):
        parts = name.removesuffix(".partial").rsplit(".", 2)
        part = parts[1] if len(parts) == 3 else ""
    else:
        return None
    return int(part) if part.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


JOURNAL_PREFIX = ".edgecnn-run."  # f"{JOURNAL_PREFIX}{pid}.{command}.json": what a running command writes


class RunJournal:
    """What a command will write in a folder, kept in a hidden file while it works. A run killed or
    interrupted leaves its journal behind; the next run of that command in the folder finds it (its
    writer gone) and may replace those outputs, complete or not, without --force, so an interrupted
    run re-runs as it was typed. Files the journal does not name are still never replaced."""

    def __init__(self, folder: str | os.PathLike, command: str, outputs):
        self.folder, self.command = Path(folder), command
        check_name_length(self.folder)  # before any lookup in it
        self.outputs = [Path(p).name for p in outputs]
        self.path = self.folder / f"{JOURNAL_PREFIX}{os.getpid()}.{command}.json"
        self.stale: list[Path] = []
        self.replaceable: set[str] = set()
        for removed in sweep_stale(self.folder):
            log.info("removed %s, left by an interrupted run", removed)
        for journal in (
            sorted(self.folder.glob(f"{JOURNAL_PREFIX}*.{command}.json")) if self.folder.is_dir() else []
        ):
            pid = journal.name[len(JOURNAL_PREFIX) :].split(".", 1)[0]
            if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
                continue
            try:
                body = json.loads(journal.read_text())
                names = [str(n) for n in body["outputs"]] if body.get("command") == command else []
            except (OSError, ValueError, KeyError, TypeError, AttributeError):  # not a journal: ignored
                names = []
            self.stale.append(journal)
            self.replaceable.update(names)

    def resumes(self) -> bool:
        """Whether every output that exists was left by an interrupted run of this command (and one
        does): then they may all be replaced without --force."""
        existing = [n for n in self.outputs if (self.folder / n).exists()]
        return bool(existing) and set(existing) <= self.replaceable

    def begin(self) -> None:
        """Record the outputs (with any an interrupted run left) before the first is written."""
        names = sorted({*self.outputs, *(n for n in self.replaceable if (self.folder / n).exists())})
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_output(self.path, force=True) as tmp:
            tmp.write_text(json.dumps({"command": self.command, "outputs": names}))
        for journal in self.stale:
            journal.unlink(missing_ok=True)

    def done(self) -> None:
        """Every output is complete: nothing is left to resume."""
        self.path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def writing(self):
        """begin(), then done() on success; a run stopped with nothing of it visible keeps no
        journal either (a killed one cannot get here: its journal stays for the next run)."""
        self.begin()
        try:
            yield self
        except BaseException:
            if not any((self.folder / n).exists() for n in self.outputs):
                self.done()
            raise
        self.done()
