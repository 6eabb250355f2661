"""Enumerate the files to curate: folders walked in sorted order, archives read member by member."""

import os
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.io.hf_dataset import is_dataset_path

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


def refuse_datasets(inputs: dict[str, str]) -> None:
    """A Hugging Face dataset given as an input (a save_to_disk folder, a DatasetDict's, a .parquet or
    .arrow file) is refused in one line. Walked as files it gave junk: its metadata JSON as documents
    and its rows, in binary .arrow files, skipped. train.py reads it whole as a `format: hf` source, whose
    text_key names the text column (one a dataset is likely to call `content` or `body`, not `text`)."""
    for source, root in inputs.items():
        if is_dataset_path(root):
            raise ChipadaptError(
                f"data.curate.inputs[{source}]: {root} is a Hugging Face dataset, whose rows curation does not "
                f"read (it reads files); give it to train.py as a source instead: "
                f"'+data.sources.{source}.path={root}' +data.sources.{source}.format=hf "
                f"(+data.sources.{source}.text_key=COLUMN where its text column is not 'text')"
            )


def units(inputs: dict[str, str]) -> Iterator[Unit]:
    refuse_datasets(inputs)
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


def hidden_member(name: str) -> bool:
    """An archive member under a hidden path, as a hidden file in a folder is: a part of its name starting
    with a dot ('.' and '..' are not names: `tar -C repo .` writes './src/a.v')."""
    return any(part.startswith(".") and part not in (".", "..") for part in name.split("/"))


def archive_members(path: str, max_bytes: int) -> Iterator[tuple[str, bytes | None, int, str | None]]:
    """(member name, bytes or None, size, why skipped or None) for each regular file and each link (symbolic
    or hard, never followed) in the archive. Skipped ones, with bytes None and size 0 as in a folder:
    "hidden" (hidden_member; never read, links included) and "symlink". Bytes are None over max_bytes too."""
    if path.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            for info in sorted(archive.infolist(), key=lambda i: i.filename):
                if info.is_dir():
                    continue
                skip = "hidden" if hidden_member(info.filename) else "symlink" if _zip_link(info) else None
                if skip:
                    yield info.filename, None, 0, skip
                    continue
                data = archive.read(info) if info.file_size <= max_bytes else None
                yield info.filename, data, info.file_size, None
        return
    with tarfile.open(path, "r:*") as archive:
        for member in archive:
            link = member.issym() or member.islnk()
            if not link and not member.isfile():
                continue
            skip = "hidden" if hidden_member(member.name) else "symlink" if link else None
            if skip:
                yield member.name, None, 0, skip
                continue
            data = archive.extractfile(member).read() if member.size <= max_bytes else None
            yield member.name, data, member.size, None
