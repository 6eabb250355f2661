"""Enumerate the files to curate: folders walked in sorted order, archives read member by member."""

import os
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
FILES_PER_UNIT = 32


@dataclass(frozen=True)
class Unit:
    """One piece of work for a worker: a batch of plain files, or one whole archive. `links` are the
    symbolic links met on the way: not followed, but reported, so the counts add up. `hidden` are the
    hidden files (a name starting with a dot, or under such a folder: .git, .github, .gitignore): not
    read, but reported the same way."""

    source: str
    root: str
    files: tuple[str, ...] = ()
    archive: str | None = None
    links: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()


def is_archive(path: str) -> bool:
    return path.lower().endswith(ARCHIVE_SUFFIXES)


def hidden_files(folder: str) -> list[str]:
    """Every file under a hidden folder (links, to files or folders, listed as they are, not followed),
    in sorted order: only listed, never opened."""
    if os.path.islink(folder):
        return [folder]
    found = []
    for parent, dirs, names in os.walk(folder):
        dirs.sort()
        found += [os.path.join(parent, d) for d in dirs if os.path.islink(os.path.join(parent, d))]
        found += [os.path.join(parent, name) for name in sorted(names)]
    return found


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
        links: list[str] = []
        hidden: list[str] = []
        for folder, dirs, names in os.walk(root_path):
            # Hidden folders (.git, .github, .venv) are not curated, but their files are counted: a user
            # who meant one to be read learns it was not from the report.
            for d in sorted(d for d in dirs if d.startswith(".")):
                hidden += hidden_files(os.path.join(folder, d))
            visible = sorted(d for d in dirs if not d.startswith("."))
            # os.walk does not enter a link to a folder; it is listed among the folders, so counted here.
            links += [os.path.join(folder, d) for d in visible if os.path.islink(os.path.join(folder, d))]
            dirs[:] = [d for d in visible if not os.path.islink(os.path.join(folder, d))]
            for name in sorted(names):
                path = os.path.join(folder, name)
                if name.startswith("."):
                    hidden.append(path)
                elif os.path.islink(path):  # the target may be outside the input, or read twice, or gone
                    links.append(path)
                elif is_archive(name):
                    yield Unit(source, str(root_path), archive=path)
                    continue
                else:
                    batch.append(path)
                if len(batch) + len(links) + len(hidden) >= FILES_PER_UNIT:
                    yield Unit(source, str(root_path), tuple(batch), links=tuple(links), hidden=tuple(hidden))
                    batch, links, hidden = [], [], []
        if batch or links or hidden:
            yield Unit(source, str(root_path), tuple(batch), links=tuple(links), hidden=tuple(hidden))


def _zip_link(info: zipfile.ZipInfo) -> bool:
    # Unix zip tools keep the file mode in the high 16 bits of external_attr; S_IFLNK marks a link.
    return stat.S_ISLNK(info.external_attr >> 16)


def archive_members(path: str, max_bytes: int) -> Iterator[tuple[str, bytes | None, int, bool]]:
    """(member name, bytes or None when over max_bytes or a link, size, is a link) for each regular
    file and each link (symbolic or hard, never followed) in the archive."""
    if path.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            for info in sorted(archive.infolist(), key=lambda i: i.filename):
                if info.is_dir():
                    continue
                if _zip_link(info):
                    yield info.filename, None, 0, True
                    continue
                data = archive.read(info) if info.file_size <= max_bytes else None
                yield info.filename, data, info.file_size, False
        return
    with tarfile.open(path, "r:*") as archive:
        for member in archive:
            if member.issym() or member.islnk():
                yield member.name, None, 0, True
                continue
            if not member.isfile():
                continue
            data = archive.extractfile(member).read() if member.size <= max_bytes else None
            yield member.name, data, member.size, False
