"""Zip archives of the paper's data, refused before anything is written when they are not what they claim: not a
zip (an HTML page saved in its place), a member that would land outside its folder (``../``, absolute, a drive
letter), or more files, bytes or compression than the limits allow (a "zip bomb"); extraction of one top-level
folder only, so nothing beside it is replaced; listings (size and CRC-32 per file) to verify an extraction later.
Used by :mod:`infodecomp.data.download`.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from ..checks import contained_path

__all__ = ["ArchiveError", "MAX_ARCHIVE_FILES", "MAX_ARCHIVE_BYTES", "MAX_ARCHIVE_RATIO", "RATIO_FLOOR", "extract_zip",
           "zip_listing", "check_extracted", "is_html"]


class ArchiveError(ValueError):
    """An archive is refused before anything is extracted: not a zip (an HTML page saved in its place, say), a
    member that would land outside its folder, or more files, bytes or compression than :func:`extract_zip`
    allows."""


#: Limits on what one archive may extract (the largest real one, COCO val2014, holds 40,504 files, 6.2 GiB, at a
#: ratio near 1): a zip that declares more is refused before anything is written (a "zip bomb").
MAX_ARCHIVE_FILES = 200_000
MAX_ARCHIVE_BYTES = 32 * 2**30
#: Uncompressed / compressed size above which an archive of more than :data:`RATIO_FLOOR` bytes is refused: JPEG
#: archives are near 1 and JSON annotations near 5; 1000× is a bomb.
MAX_ARCHIVE_RATIO = 100.0
RATIO_FLOOR = 16 * 2**20


def _archive_members(zf: zipfile.ZipFile, archive: Path, *, only: str | None, max_files: int, max_bytes: int,
                     max_ratio: float) -> tuple[list[zipfile.ZipInfo], list[str]]:
    """``(members to extract, names left out)`` of an archive, or :class:`ArchiveError` before anything is written:
    a member that would land outside the extraction folder (absolute, ``..``), more than ``max_files`` files, more
    than ``max_bytes`` bytes in all, or an uncompressed / compressed ratio over ``max_ratio``. With ``only``,
    members outside that top-level folder are left out (never written beside it) and named in the second list;
    ``__MACOSX/`` is always left out."""
    keep, skipped, total = [], [], 0
    for m in zf.infolist():
        try:
            contained_path(".", m.filename, f"archive member {m.filename!r}")
        except ValueError as err:
            raise ArchiveError(f"{archive}: refusing to extract {m.filename!r}: it would land outside the "
                               f"extraction folder ({err})") from None
        top = _top(m.filename)
        if top == "__MACOSX":
            continue
        if only is not None and top != only:
            skipped.append(m.filename)
            continue
        keep.append(m)
        total += m.file_size
    files = sum(not m.is_dir() for m in keep)
    if files > max_files:
        raise ArchiveError(f"{archive}: holds {files:,} files, over the limit of {max_files:,}; refusing to "
                           "extract it")
    if total > max_bytes:
        raise ArchiveError(f"{archive}: would extract to {total:,} bytes, over the limit of {max_bytes:,}; "
                           "refusing to extract it")
    packed = max(1, archive.stat().st_size)
    if total > RATIO_FLOOR and total / packed > max_ratio:
        raise ArchiveError(f"{archive}: {packed:,} bytes would extract to {total:,} ({total / packed:,.0f}× "
                           f"compression, over the limit of {max_ratio:g}×): not the data this archive should "
                           "hold; refusing to extract it")
    free = shutil.disk_usage(archive.parent).free
    if total > free:
        raise ArchiveError(f"{archive}: needs {total:,} bytes to extract but {free:,} are free on that disk")
    return keep, skipped


def _top(member: str) -> str:
    """The top-level name a (contained) archive member lands under: ``"images"`` for ``"./images/1.jpg"``."""
    return posixpath.normpath(member.replace("\\", "/")).split("/", 1)[0]


def is_html(path: Path) -> bool:
    """Whether a file begins like a web page (``<!doctype html`` or ``<html``, after blanks)."""
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


def _open_zip(archive: Path) -> zipfile.ZipFile:
    """The zip at ``archive``, or :class:`ArchiveError` saying what the file is instead (a web page, say)."""
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        what = ("an HTML page (a download that returned a web page instead of the file)"
                if is_html(archive) else f"not a zip archive ({err})")
        raise ArchiveError(f"{archive} ({archive.stat().st_size:,} bytes) is {what}; delete it and fetch again"
                           ) from None


def extract_zip(archive: str | os.PathLike, dest: str | os.PathLike, *, only: str | None = None,
                max_files: int = MAX_ARCHIVE_FILES, max_bytes: int = MAX_ARCHIVE_BYTES,
                max_ratio: float = MAX_ARCHIVE_RATIO, log: Callable[[str], None] | None = None) -> list[str]:
    """Extract ``archive`` into ``dest`` through a hidden staging folder, so that an interrupted extraction
    never leaves a half-filled folder in place. Returns the top-level names moved into ``dest``; existing
    entries of the same name are replaced.

    ``only``: the one top-level name the archive may create in ``dest`` (a resource's own folder, e.g.
    ``"images"``): other members are left out (and logged), so that an archive never replaces a file beside its
    folder (a user's annotation file, say). Raises :class:`ArchiveError` before anything is written for a file
    that is not a zip, a member outside ``dest`` and more than ``max_files`` files, ``max_bytes`` bytes or
    ``max_ratio`` compression (see :func:`_archive_members`)."""
    archive, dest = Path(archive), Path(dest)
    with _open_zip(archive) as zf:
        members, skipped = _archive_members(zf, archive, only=only, max_files=max_files, max_bytes=max_bytes,
                                            max_ratio=max_ratio)
        if skipped and log is not None:
            log(f"[WARN] {archive.name}: left out {len(skipped)} member(s) outside its folder {only}/: "
                f"{', '.join(skipped[:5])}{', …' if len(skipped) > 5 else ''}")
        dest.mkdir(parents=True, exist_ok=True)
        stage = dest / f".extract-{archive.stem}"
        if stage.exists():
            shutil.rmtree(stage)
        stage.mkdir()
        try:
            try:
                zf.extractall(stage, members=members)
            except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as err:  # a damaged member
                raise ArchiveError(f"{archive}: a member cannot be extracted ({type(err).__name__}: {err}); "
                                   "delete it and fetch again") from None
            tops = sorted(p.name for p in stage.iterdir())
            for name in tops:
                target = dest / name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                elif target.exists() or target.is_symlink():
                    target.unlink()
                os.replace(stage / name, target)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return tops


def zip_listing(archive: str | os.PathLike, only: str | None = None) -> dict[str, list[int]]:
    """``{path relative to the extraction folder: [size in bytes, CRC-32]}`` of every file in a zip (folders and
    ``__MACOSX`` left out; with ``only``, just the files under that top-level folder): what its extraction must
    produce."""
    with _open_zip(Path(archive)) as zf:
        return {m.filename: [m.file_size, m.CRC] for m in zf.infolist()
                if not m.is_dir() and not m.filename.startswith("__MACOSX/")
                and (only is None or _top(m.filename) == only)}


def _crc32(path: Path, chunk: int = 1 << 20) -> int:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            crc = zlib.crc32(block, crc)
    return crc


def check_extracted(folder: str | os.PathLike, listing: dict[str, list[int]], *, deep: bool = False) -> list[str]:
    """What is wrong with an extracted archive: each file of ``listing`` (:func:`zip_listing`) must exist under
    ``folder`` with its size (and, with ``deep``, its CRC-32, which reads every byte). Returns one line per
    missing or damaged file (empty: all there)."""
    folder = Path(folder)
    bad = []
    for rel, (size, crc) in sorted(listing.items()):
        try:
            path = contained_path(folder, rel, "a file the stamp lists")
        except ValueError as err:
            bad.append(str(err))
            continue
        if not path.is_file():
            bad.append(f"{rel}: missing")
        elif path.stat().st_size != size:
            bad.append(f"{rel}: {path.stat().st_size:,} bytes, expected {size:,}")
        elif deep and _crc32(path) != crc:
            bad.append(f"{rel}: contents differ from the archive's (CRC-32)")
    return bad


