"""Enumerate the files to curate: folders walked in sorted order, archives read member by member."""

import os
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
FILES_PER_UNIT = 32


@dataclass(frozen=True)
class Unit:
    """One piece of work for a worker: a batch of plain files, or one whole archive."""

    source: str
    root: str
    files: tuple[str, ...] = ()
    archive: str | None = None


def is_archive(path: str) -> bool:
    return path.lower().endswith(ARCHIVE_SUFFIXES)


def units(inputs: dict[str, str]) -> Iterator[Unit]:
    for source, root in inputs.items():
        root_path = Path(root)
        if root_path.is_file():
            if is_archive(root):
                yield Unit(source, str(root_path.parent), archive=str(root_path))
            else:
                yield Unit(source, str(root_path.parent), files=(str(root_path),))
            continue
        batch: list[str] = []
        for folder, dirs, names in os.walk(root_path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                path = os.path.join(folder, name)
                if name.startswith(".") or os.path.islink(path):
                    continue
                if is_archive(name):
                    yield Unit(source, str(root_path), archive=path)
                    continue
                batch.append(path)
                if len(batch) == FILES_PER_UNIT:
                    yield Unit(source, str(root_path), files=tuple(batch))
                    batch = []
        if batch:
            yield Unit(source, str(root_path), files=tuple(batch))


def archive_members(path: str, max_bytes: int) -> Iterator[tuple[str, bytes | None, int]]:
    """(member name, bytes or None when over max_bytes, size) for each regular file in the archive."""
    if path.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            for info in sorted(archive.infolist(), key=lambda i: i.filename):
                if info.is_dir():
                    continue
                yield info.filename, (archive.read(info) if info.file_size <= max_bytes else None), info.file_size
        return
    with tarfile.open(path, "r:*") as archive:
        for member in archive:
            if not member.isfile():
                continue
            data = archive.extractfile(member).read() if member.size <= max_bytes else None
            yield member.name, data, member.size
