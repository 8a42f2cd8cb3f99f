"""What makes a checkpoint loadable: a manifest of every file's size and SHA-256, written (after every
file and directory is fsynced) before the COMPLETE marker, which in turn records the manifest's own
digest. `verify` checks all of it before anything is loaded, so a truncated, edited, missing or
extra file - from a crash, a bad disk, or a hand - makes the checkpoint refused, never half-loaded.

The digests catch damage and edits by anyone who does not also rewrite the manifest and the marker;
the run's keys live only in memory, so a checkpoint cannot be MACed in a way a later `--resume`
process could check. Keep checkpoint directories writable by the run's user only.
"""

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

MANIFEST_FILE = "MANIFEST.json"
_READ_BYTES = 8 << 20
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class CheckpointCorruptError(RuntimeError):
    """A checkpoint's files do not match its manifest (or it has none); it must not be loaded."""


class CheckpointWriteError(RuntimeError):
    """Writing a checkpoint failed (the disk is full, or another I/O error); its partial directory was
    removed and every earlier complete checkpoint is untouched."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc`, or anything in its cause chain, is ENOSPC / EDQUOT (also as text, for errors a
    Ray actor raised remotely, which arrive re-wrapped)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK_FULL:
            return True
        if "No space left on device" in str(current) or "Disk quota exceeded" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a rename or a new entry is durable only once its directory is)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest(path: Path, *, sync: bool) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_READ_BYTES):
            sha.update(block)
        if sync:
            os.fsync(handle.fileno())  # the writer (DeepSpeed, torch.save) may not have: durable before listed
    return sha.hexdigest()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """`path` holds either its old content or all of `data`, never a part: a temporary file in the same
    directory, fsynced, renamed over it, then the directory fsynced (the rename is durable only then)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def _files(directory: Path, skip: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.relative_to(directory).as_posix() not in skip)


def write_manifest(directory: Path, *, skip: tuple[str, ...]) -> str:
    """List (size, SHA-256) of every file under `directory` except `skip` (relative names), fsync the
    files and directories, write MANIFEST.json atomically; return the manifest's own SHA-256."""
    entries = {p.relative_to(directory).as_posix(): {"bytes": p.stat().st_size, "sha256": _digest(p, sync=True)}
               for p in _files(directory, (*skip, MANIFEST_FILE))}
    for sub in sorted({p.parent for p in directory.rglob("*") if p.is_file()} | {directory}):
        fsync_path(sub)
    raw = json.dumps({"format": 1, "files": entries}, indent=1, sort_keys=True).encode() + b"\n"
    write_bytes_atomic(directory / MANIFEST_FILE, raw)
    return hashlib.sha256(raw).hexdigest()


def verify(directory: Path, manifest_sha256: str, *, skip: tuple[str, ...]) -> dict[str, Any]:
    """Raise CheckpointCorruptError unless MANIFEST.json has digest `manifest_sha256` and the files
    under `directory` (except `skip`) are exactly those it lists, with their sizes and digests."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise CheckpointCorruptError(f"{directory}: no {MANIFEST_FILE}")
    raw = path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != manifest_sha256:
        raise CheckpointCorruptError(f"{path}: digest differs from the one its COMPLETE marker recorded")
    try:
        listed: dict[str, dict[str, Any]] = json.loads(raw)["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointCorruptError(f"{path}: unreadable manifest ({exc})") from None
    present = {p.relative_to(directory).as_posix(): p for p in _files(directory, (*skip, MANIFEST_FILE))}
    if missing := sorted(set(listed) - set(present)):
        raise CheckpointCorruptError(f"{directory}: missing {missing[:5]} ({len(missing)} files)")
    if extra := sorted(set(present) - set(listed)):
        raise CheckpointCorruptError(f"{directory}: files not in its manifest {extra[:5]}")
    for name, entry in listed.items():
        size = present[name].stat().st_size
        if size != entry["bytes"]:
            raise CheckpointCorruptError(f"{present[name]}: {size} bytes, the manifest says {entry['bytes']} "
                                         "(truncated or overwritten)")
        if _digest(present[name], sync=False) != entry["sha256"]:
            raise CheckpointCorruptError(f"{present[name]}: SHA-256 differs from the manifest's (damaged or edited)")
    return listed
