"""Fetch and verify the external data of the paper's experiments.

Every external file is one :class:`Resource` of :data:`MANIFEST`: where it goes under a data root, the URL(s)
it comes from, its sha256 (or md5) and size where a published value is known, and **where that checksum came
from**. Nothing is ever downloaded at import time or by the tests.

Layout under the data root (``--root``, default ``./datasets``; the reference repository's layout)::

    ROOT/coco/COCO-IT.csv, COCO100-IT.csv, COCO-WL.csv      caption tables (docs/protocol.md#coco-it)
    ROOT/coco/val2017/000000397133.jpg …                    COCO 2017 val images (5,000)
    ROOT/coco/annotations/instances_val2017.json            masks; captions_val2017.json rebuilds COCO-IT
    ROOT/aro/vg/visual_genome_relation.json                 VG-Relation (ARO)
    ROOT/aro/vg/visual_genome_attribution.json              VG-Attribution (ARO)
    ROOT/aro/vg/images/…                                    their images (vgr_vga_images.zip)
    ROOT/aro/coco/coco_karpathy_test.json, val2014/…        COCO-Order (Karpathy test split, COCO 2014 val images)
    ROOT/aro/flickr/flickr30k_test.json, flickr30k-images/… Flickr30k-Order (images fetched by hand)

Command line::

    python -m infodecomp.data.download --list                      # the manifest
    python -m infodecomp.data.download coco --root datasets        # fetch a group (or single names)
    python -m infodecomp.data.download --root datasets --verify    # check everything that is there, fetch nothing
    python -m infodecomp.data.download coco --root datasets --verify --deep   # also the CRC of extracted files

Fetching (:func:`fetch`): a file goes to ``DEST.part`` (resumed with an HTTP ``Range`` request when a partial
file is left over and the server supports it), is checked against its sha256 / md5 and size, and only then
renamed to ``DEST`` — so ``DEST`` is never a half-written or wrong file. Zip archives are extracted into a
hidden staging folder and moved into place; a stamp file records the verified archive hash and the name, size and
CRC-32 of every file the archive holds, so that a later ``--verify`` checks the extracted files themselves (a
deleted or truncated image is a mismatch; ``--deep`` compares CRCs too), and the archive is deleted unless
``--keep-archives`` (a kept archive is hashed again by ``--verify``).
An archive is refused before anything is written when it is not a zip (an HTML page saved in its place), names
a member outside its folder, or declares more than :data:`MAX_ARCHIVE_FILES` files, :data:`MAX_ARCHIVE_BYTES`
bytes or :data:`MAX_ARCHIVE_RATIO` compression; it extracts only the resource's own top-level folder, so a file
beside it (your annotation file) is never replaced. A refused resource is a ``[FAIL]`` line; the others go on.
A file whose checksum is not published anywhere we know is reported **UNVERIFIED** (loudly, with its sha256 so
that you can record it) rather than passed off as checked; ``--strict`` refuses such files.
Google-Drive files (ARO's VG data) are fetched with ``gdown`` when it is installed (``pip install gdown``),
otherwise with a plain request to Drive's download endpoint. Flickr30k images cannot be fetched automatically:
the command prints what to do by hand.

Licences: COCO annotations © COCO Consortium, CC BY 4.0 (images: Flickr terms); the three caption tables are
COCO captions plus columns by Kong et al. (MIT, kxh001/Info-Decomp); Visual Genome CC BY 4.0; ARO annotations
MIT (mertyg/vision-language-models-are-bows); Flickr30k research-only terms (not redistributable).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import posixpath
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..checks import contained_path
# the archive limits are documented here too: re-exported for `download.MAX_ARCHIVE_FILES` and the like
from .archives import (MAX_ARCHIVE_BYTES, MAX_ARCHIVE_FILES, MAX_ARCHIVE_RATIO, RATIO_FLOOR,  # noqa: F401
                       ArchiveError, check_extracted, extract_zip, is_html, zip_listing)

#: Default data root (relative to the working directory), as in the reference repository's ``datasets/``.
DEFAULT_ROOT = "datasets"

#: The reference repository and the commit its caption tables are pinned to (commit 5348572, docs/protocol.md).
REFERENCE_REPO = "kxh001/Info-Decomp"
REFERENCE_COMMIT = "534857249592893bf8868041c377b3397514f638"
_RAW = f"https://raw.githubusercontent.com/{REFERENCE_REPO}/{REFERENCE_COMMIT}/datasets/coco"

_TFDS_2017 = ("tensorflow/datasets tensorflow_datasets/url_checksums/coco2017.txt (commit 2282548b; "
              "also url_checksums/coco.txt)")
_TFDS_2014 = ("tensorflow/datasets tensorflow_datasets/url_checksums/coco2014.txt (commit 24211da0; "
              "also url_checksums/coco.txt)")
_SHARED = ("computed by this project from the files at that commit (sha256sum of the reference repository's "
           "datasets/coco/*.csv)")
_NONE = "none published that we know of: verification reports UNVERIFIED and prints the local sha256"

#: Where to ask for Flickr30k (the ARO code's pointer).
FLICKR30K_FORM = "https://forms.illinois.edu/sec/229675"


@dataclass(frozen=True)
class Resource:
    """One external file (or archive) of the manifest.

    name: short id used on the command line. dest: path under the data root where the file goes.
    urls: tried in order (``http(s)://`` or ``file://``). sha256 / md5: lower-case hex digests, None when
    unknown; size: bytes, None when unknown; checksum_source: where the checksum came from (or why none).
    gdrive_id: a Google-Drive file id (fetched with gdown when installed). extract_to: for a zip, the folder
    (under the root) to extract into; extracted: the path (under the root) that exists once extracted.
    manual: instructions when the file cannot be fetched automatically (then urls is empty). listed_by: for a
    manual folder of images, the annotation file (under the root) whose ``image`` entries name the files that
    must be in it (what ``--verify`` checks).
    """

    name: str
    dest: str
    description: str
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    checksum_source: str = _NONE
    gdrive_id: str | None = None
    extract_to: str | None = None
    extracted: str | None = None
    manual: str | None = None
    listed_by: str | None = None
    licence: str = ""
    used_by: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_archive(self) -> bool:
        return self.extract_to is not None

    @property
    def checksum_kind(self) -> str | None:
        """"sha256", "md5" or None (no published checksum)."""
        return "sha256" if self.sha256 else "md5" if self.md5 else None

    @property
    def how(self) -> str:
        return "manual" if self.manual and not self.urls and not self.gdrive_id else \
            "gdrive" if self.gdrive_id else "url"


_COCO_LICENCE = "COCO annotations CC BY 4.0 (COCO Consortium); images under Flickr terms"
_TABLE_LICENCE = "MIT (© 2023 Xianghao Kong, kxh001/Info-Decomp); text = COCO captions, CC BY 4.0"
_ARO_LICENCE = "ARO annotations MIT (© 2023 Mert Yuksekgonul); Visual Genome images CC BY 4.0"

MANIFEST: dict[str, Resource] = {r.name: r for r in (
    Resource("coco-it-csv", "coco/COCO-IT.csv", "COCO-IT caption table (6,927 rows)",
             urls=(f"{_RAW}/COCO-IT.csv",), size=860560,
             sha256="3dd361d39e3c2d5846ee85dea54f1c7c8b7ccb4f5e88319e46c6e69d88024b99",
             checksum_source=_SHARED, licence=_TABLE_LICENCE, used_by=("heat maps", "localization (Table 3)")),
    Resource("coco100-it-csv", "coco/COCO100-IT.csv", "COCO100-IT caption table (100 rows)",
             urls=(f"{_RAW}/COCO100-IT.csv",), size=16950,
             sha256="22a3b030823c529c1efdeab977d1f06ee74ebbf9dd87abf943397729130bcbb1",
             checksum_source=_SHARED, licence=_TABLE_LICENCE, used_by=("heat maps (Fig. 2)", "intervention (Table 4)")),
    Resource("coco-wl-csv", "coco/COCO-WL.csv", "COCO-WL word table (70 rows)",
             urls=(f"{_RAW}/COCO-WL.csv",), size=13077,
             sha256="2ecf9efeb4f6ce3521290e748d7630b140e254761b7776b4452c825830a90c10",
             checksum_source=_SHARED, licence=_TABLE_LICENCE, used_by=("heat maps (Fig. 2 abstract words)",)),
    Resource("coco-val2017", "coco/val2017.zip", "COCO 2017 validation images (5,000 JPEGs, 778 MiB zip)",
             urls=("http://images.cocodataset.org/zips/val2017.zip",), size=815585330,
             sha256="4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05",
             checksum_source=_TFDS_2017,
             extract_to="coco", extracted="coco/val2017", licence=_COCO_LICENCE,
             used_by=("COCO-IT", "COCO100-IT", "COCO-WL")),
    Resource("coco-annotations2017", "coco/annotations_trainval2017.zip",
             "COCO 2017 train/val annotations (instances_val2017.json, captions_val2017.json, …; 241 MiB zip)",
             urls=("http://images.cocodataset.org/annotations/annotations_trainval2017.zip",), size=252907541,
             sha256="113a836d90195ee1f884e704da6304dfaaecff1f023f49b6ca93c4aaae470268",
             checksum_source=_TFDS_2017,
             extract_to="coco", extracted="coco/annotations/instances_val2017.json", licence=_COCO_LICENCE,
             used_by=("masks of COCO-IT/COCO100-IT", "rebuilding COCO-IT")),
    Resource("coco-karpathy-test", "aro/coco/coco_karpathy_test.json",
             "Karpathy test split of COCO (5,000 val2014 images × ~5 captions), BLIP/LAVIS copy",
             urls=("https://storage.googleapis.com/sfr-vision-language-research/datasets/coco_karpathy_test.json",),
             md5="3ff34b0ef2db02d01c37399f6a2a6cd1",
             checksum_source="md5 only: salesforce/LAVIS lavis/configs/datasets/coco/defaults_cap.yaml "
                             "(no sha256 published)",
             licence="COCO captions CC BY 4.0", used_by=("COCO-Order",)),
    Resource("coco-val2014", "aro/coco/val2014.zip", "COCO 2014 validation images (40,504 JPEGs, 6.2 GiB zip)",
             urls=("http://images.cocodataset.org/zips/val2014.zip",), size=6645013297,
             sha256="fe9be816052049c34717e077d9e34aa60814a55679f804cd043e3cbee3b9fde0",
             checksum_source=_TFDS_2014, extract_to="aro/coco", extracted="aro/coco/val2014",
             licence=_COCO_LICENCE, used_by=("COCO-Order",)),
    Resource("vg-relation-json", "aro/vg/visual_genome_relation.json", "ARO VG-Relation test cases (23,937)",
             gdrive_id="1kX2iCHEv0CADL8dSO1nMdW-V0NqIAiP3", licence=_ARO_LICENCE, used_by=("VG-Relation",)),
    Resource("vg-attribution-json", "aro/vg/visual_genome_attribution.json",
             "ARO VG-Attribution test cases (28,748)",
             gdrive_id="13tWvOrNOLHxl3Rm9cR3geAdHx2qR3-Tw", licence=_ARO_LICENCE, used_by=("VG-Attribution",)),
    Resource("vg-images", "aro/vg/vgr_vga_images.zip",
             "images of VG-Relation / VG-Attribution (a GQA/VG subset, ~1 GB zip with an images/ folder)",
             gdrive_id="1qaPlrwhGNMrR3a11iopZUT_GPP_LrgP9", extract_to="aro/vg", extracted="aro/vg/images",
             licence=_ARO_LICENCE, used_by=("VG-Relation", "VG-Attribution")),
    Resource("flickr30k-test", "aro/flickr/flickr30k_test.json",
             "Karpathy test split of Flickr30k (1,000 images × 5 captions), BLIP/LAVIS copy",
             urls=("https://storage.googleapis.com/sfr-vision-language-research/datasets/flickr30k_test.json",),
             licence="Flickr30k captions: research-only terms", used_by=("Flickr30k-Order",)),
    Resource("flickr30k-images", "aro/flickr/flickr30k-images",
             "Flickr30k images (31,783 JPEGs; the 1,000 test images are enough)",
             manual=(f"Flickr30k images are distributed only after a request form. Fill in the form at "
                     f"{FLICKR30K_FORM} (University of Illinois), download the image archive it links "
                     "(flickr30k-images.tar.gz, ~4.4 GB) and extract it so that the JPEGs lie directly in "
                     "ROOT/aro/flickr/flickr30k-images/ (e.g. ROOT/aro/flickr/flickr30k-images/1007129816.jpg). "
                     "Only the files named in flickr30k_test.json are read."),
             listed_by="aro/flickr/flickr30k_test.json",
             licence="Flickr30k: research-only terms, not redistributable", used_by=("Flickr30k-Order",)),
)}

#: Named groups of resources (a name on the command line may be a group or a single resource).
GROUPS: dict[str, tuple[str, ...]] = {
    "coco-tables": ("coco-it-csv", "coco100-it-csv", "coco-wl-csv"),
    "coco": ("coco-it-csv", "coco100-it-csv", "coco-wl-csv", "coco-val2017", "coco-annotations2017"),
    "vg-relation": ("vg-relation-json", "vg-images"),
    "vg-attribution": ("vg-attribution-json", "vg-images"),
    "coco-order": ("coco-karpathy-test", "coco-val2014"),
    "flickr-order": ("flickr30k-test", "flickr30k-images"),
    "aro": ("vg-relation-json", "vg-attribution-json", "vg-images", "coco-karpathy-test", "coco-val2014",
            "flickr30k-test", "flickr30k-images"),
    "all": tuple(MANIFEST),
}


class ChecksumError(RuntimeError):
    """A downloaded or present file does not match the manifest's checksum or size."""


class ManualDownloadRequired(RuntimeError):
    """A resource must be fetched by hand (see its ``manual`` instructions)."""


# ---------------------------------------------------------------------------------------------------------
# Selection and hashing
# ---------------------------------------------------------------------------------------------------------


def resolve(names: Iterable[str]) -> list[Resource]:
    """The resources named by ``names`` (resource names or :data:`GROUPS`), deduplicated, in manifest order."""
    wanted: set[str] = set()
    for n in names:
        if n in GROUPS:
            wanted.update(GROUPS[n])
        elif n in MANIFEST:
            wanted.add(n)
        else:
            raise ValueError(f"unknown data resource {n!r}; expected one of the groups {sorted(GROUPS)} "
                             f"or the names {sorted(MANIFEST)}")
    return [r for name, r in MANIFEST.items() if name in wanted]


def file_digests(path: str | os.PathLike, chunk: int = 1 << 20) -> tuple[str, str, int]:
    """(sha256 hex, md5 hex, size in bytes) of a file, read once."""
    sha, md5, n = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            sha.update(block)
            md5.update(block)
            n += len(block)
    return sha.hexdigest(), md5.hexdigest(), n


@dataclass(frozen=True)
class Check:
    """Result of checking one file against a resource. status: "ok" (checksum matched), "unverified" (no
    published checksum; size matched if known), "mismatch", "missing". detail: a human-readable line."""

    status: str
    detail: str
    sha256: str | None = None


def check_file(path: str | os.PathLike, res: Resource) -> Check:
    """Compare a file with ``res``'s size and checksum (sha256, else md5)."""
    path = Path(path)
    if not path.is_file():
        return Check("missing", f"{path} does not exist")
    sha, md5, size = file_digests(path)
    if res.size is not None and size != res.size:
        return Check("mismatch", f"{path}: size {size:,} bytes, expected {res.size:,}", sha)
    if res.sha256:
        ok = sha == res.sha256
        return Check("ok" if ok else "mismatch",
                     f"sha256 {'matches' if ok else f'{sha} != expected {res.sha256}'}", sha)
    if res.md5:
        ok = md5 == res.md5
        return Check("ok" if ok else "mismatch",
                     f"md5 {'matches' if ok else f'{md5} != expected {res.md5}'} (no sha256 published; "
                     f"sha256 of this file: {sha})", sha)
    return Check("unverified", f"UNVERIFIED: no published checksum for {res.name}; sha256 of the local file "
                               f"is {sha} ({size:,} bytes) — record it if you trust this copy", sha)


# ---------------------------------------------------------------------------------------------------------
# Downloading
# ---------------------------------------------------------------------------------------------------------

Opener = Callable[..., object]


def _progress(total: int | None, desc: str):
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False)


def download_url(url: str, part: str | os.PathLike, *, expected_size: int | None = None,
                 opener: Opener = urllib.request.urlopen, chunk: int = 1 << 20, timeout: float = 60.0) -> Path:
    """Download ``url`` into the partial file ``part`` (bytes appended to what is already there when the server
    honours an HTTP ``Range`` request, else rewritten from the start). Returns ``part``.

    opener: ``urllib.request.urlopen`` or a stand-in with its call signature (``opener(request, timeout=)``
    returning a response with ``.status`` / ``.getcode()``, ``.headers`` and ``.read(n)``; used by the tests).
    Only ``http(s)`` and ``file`` URLs are accepted.
    """
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ("http", "https", "file"):
        raise ValueError(f"unsupported URL scheme {scheme!r} in {url!r}; expected http, https or file")
    part = Path(part)
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    if expected_size is not None and have > expected_size:
        part.unlink()  # longer than the real file: certainly not a prefix of it
        have = 0
    req = urllib.request.Request(url, headers={"User-Agent": "infodecomp-download/1"})
    if have and scheme != "file":
        req.add_header("Range", f"bytes={have}-")
    with opener(req, timeout=timeout) as resp:
        status = getattr(resp, "status", None) or resp.getcode()
        resumed = bool(have) and status == 206
        length = resp.headers.get("Content-Length")
        total = (int(length) + (have if resumed else 0)) if length is not None else expected_size
        with open(part, "ab" if resumed else "wb") as f, _progress(total, part.name) as bar:
            if resumed:
                bar.update(have)
            while block := resp.read(chunk):
                f.write(block)
                bar.update(len(block))
    return part


def _gdrive_download(file_id: str, part: Path, *, opener: Opener = urllib.request.urlopen) -> Path:
    """A Google-Drive file into ``part``: with ``gdown`` when installed, else Drive's direct endpoint."""
    try:
        import gdown  # optional (the data extra): Drive's large-file confirmation; a plain request otherwise
    except ImportError:
        gdown = None
    if gdown is not None:
        part.parent.mkdir(parents=True, exist_ok=True)
        out = gdown.download(id=file_id, output=str(part), quiet=False)
        if out is None:
            raise RuntimeError(f"gdown could not fetch Google-Drive file {file_id} (quota or access); download "
                               f"https://drive.google.com/file/d/{file_id} in a browser and save it as "
                               f"{part.with_suffix('')}")
        return part
    url = f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"
    download_url(url, part, opener=opener)
    with open(part, "rb") as f:
        head = f.read(512).lstrip().lower()
    if head.startswith(b"<!doctype html") or head.startswith(b"<html"):
        part.unlink()
        raise RuntimeError(f"Google Drive answered with a web page instead of file {file_id}. Install gdown "
                           f"(`pip install gdown`) and run again, or download https://drive.google.com/file/d/"
                           f"{file_id} in a browser and save it as {part.with_suffix('')}")
    return part


def _own_folder(res: Resource) -> str:
    """The one top-level name an archive resource may create in its ``extract_to`` folder: the first part of
    ``extracted`` below it (``"images"`` for ``aro/vg`` → ``aro/vg/images``)."""
    return posixpath.relpath(res.extracted, res.extract_to).split("/", 1)[0]


def _stamp_path(root: Path, res: Resource) -> Path:
    return root / res.extract_to / f".{res.name}.sha256"


def _read_stamp(stamp: Path) -> dict | None:
    """The stamp written after an extraction: ``{"sha256", "kind", "name", "files"}``; an older plain-text stamp
    (``"<sha256> <kind> <name>"``) gives the same keys without ``files``; None if it is unreadable."""
    try:
        text = stamp.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("sha256"), str):
            return data
    except json.JSONDecodeError:
        pass
    parts = text.split()
    return {"sha256": parts[0], "kind": parts[1] if len(parts) > 1 else None} if parts else None


def _is_listing(listing) -> bool:
    """Whether a stamp's ``files`` is ``{path: [size, CRC-32]}`` (what :func:`zip_listing` writes)."""
    def entry(v) -> bool:
        return (isinstance(v, list) and len(v) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v))

    return isinstance(listing, dict) and all(isinstance(k, str) and entry(v) for k, v in listing.items())


def _extracted_problems(root: Path, res: Resource, listing: dict, deep: bool) -> Check | None:
    bad = check_extracted(root / res.extract_to, listing, deep=deep)
    if not bad:
        return None
    return Check("mismatch", f"{res.extracted}: {len(bad)} of {len(listing):,} extracted files are missing or "
                             f"damaged ({'; '.join(bad[:3])}{'; …' if len(bad) > 3 else ''}); fetch it again with "
                             f"--force")


def _listed_images(root: Path, res: Resource) -> tuple[int, list[str]] | None:
    """For a folder of images fetched by hand, the images its annotation file names that are missing or empty:
    ``(how many are named, problems)``; None when no annotation file says which images belong there."""
    if res.listed_by is None or not (root / res.listed_by).is_file():
        return None
    try:
        entries = json.loads((root / res.listed_by).read_text(encoding="utf-8"))
        names = sorted({e["image"] for e in entries}, key=repr)
    except (OSError, ValueError, TypeError, KeyError) as err:
        return 0, [f"{res.listed_by} cannot be read ({type(err).__name__}: {err})"]
    base = (root / res.listed_by).parent
    bad = []
    for name in names:
        try:
            path = contained_path(base, name, "image")
        except ValueError as err:  # an annotation naming a file outside its folder (/etc/hostname, ../..)
            bad.append(f"{name!r}: not a file inside {base} ({err})")
            continue
        if not path.is_file():
            bad.append(f"{name}: missing")
        elif path.stat().st_size == 0:
            bad.append(f"{name}: empty")
    return len(names), bad


def status(res: Resource, root: str | os.PathLike, *, deep: bool = False) -> Check:
    """Whether ``res`` is present and verified under ``root`` (without fetching anything).

    A plain file is hashed. An archive counts as present once its ``extracted`` path exists, and is checked as
    it is on disk: a kept archive is hashed (a damaged one is a mismatch); every file the extraction produced
    (its name and size, recorded from the archive in the stamp written after extraction, or read from the kept
    archive) must still be there with its size, and with ``deep=True`` its CRC-32; only then does the stamp's
    record of the archive's checksum make it "ok". A manual resource is present when its folder exists and is not
    empty; the images its annotation file names (Flickr30k's test split) must be there and not empty.
    """
    root = Path(root)
    if res.how == "manual":
        d = root / res.dest
        if not (d.is_dir() and any(d.iterdir())):
            return Check("missing", f"{d} is missing or empty (manual download)")
        listed = _listed_images(root, res)
        if listed is not None and listed[1]:
            n, bad = listed
            return Check("mismatch", f"{d}: {len(bad)} of {n:,} images named by {res.listed_by} are missing or "
                                     f"empty ({'; '.join(bad[:3])}{'; …' if len(bad) > 3 else ''})")
        named = f"; all {listed[0]:,} images named by {res.listed_by} are there" if listed else ""
        return Check("unverified", f"{d} present (fetched by hand; no checksum to check{named})")
    if not res.is_archive:
        return check_file(root / res.dest, res)
    archive = root / res.dest
    if not (root / res.extracted).exists():
        if archive.is_file():
            return Check("missing", f"{res.dest} downloaded but not extracted ({res.extracted} missing)")
        return Check("missing", f"{res.extracted} does not exist")
    kept = None
    if archive.is_file():
        kept = check_file(archive, res)
        if kept.status == "mismatch":
            return Check("mismatch", f"the kept archive is damaged: {kept.detail}; delete it and fetch again",
                         kept.sha256)
    stamp = _stamp_path(root, res)
    info = _read_stamp(stamp) if stamp.is_file() else None
    listing = info.get("files") if info else None
    if listing is not None and not _is_listing(listing):
        return Check("mismatch", f"the stamp {stamp} is damaged (its 'files' is {listing!r:.60}, expected "
                                 f"{{path: [size, CRC-32]}}), so the extracted files cannot be checked; fetch "
                                 f"{res.name} again with --force")
    if listing is None and kept is not None:
        try:
            listing = zip_listing(archive, only=_own_folder(res))
        except (OSError, ArchiveError) as err:
            return Check("mismatch", f"{res.dest} is not a readable zip ({err})", kept.sha256)
    if listing is not None:
        problem = _extracted_problems(root, res, listing, deep)
        if problem is not None:
            return problem
    files = (f"; its {len(listing):,} files are all there with their sizes{' and CRC-32s' if deep else ''}"
             if listing is not None else "")
    if info is None:
        if kept is not None:
            return Check(kept.status, f"{res.extracted} present; archive {res.dest}: {kept.detail}{files}",
                         kept.sha256)
        return Check("unverified", f"{res.extracted} exists but was not extracted by this tool (no stamp "
                                   f"{stamp.name}), so the archive it came from cannot be checked")
    recorded = info.get("sha256")
    expected = res.sha256 or res.md5
    if expected and expected in (info.get("sha256"), info.get("md5")):
        if listing is None:
            return Check("unverified", f"{res.extracted} extracted from an archive whose {res.checksum_kind} "
                                       f"matched, but its stamp {stamp.name} (written by an older version) does not "
                                       "list the extracted files, so they cannot be checked; fetch again with "
                                       "--force to re-extract", recorded)
        return Check("ok", f"{res.extracted} extracted from an archive whose {res.checksum_kind} matched{files}",
                     recorded)
    if expected is None:
        return Check("unverified", f"{res.extracted} extracted from an archive with no published checksum "
                                   f"(its sha256 was {recorded}){files}", recorded)
    return Check("mismatch", f"{res.extracted} was extracted from an archive with sha256 {recorded}, "
                             f"not the manifest's {expected}", recorded)


def fetch(res: Resource, root: str | os.PathLike, *, keep_archive: bool = False, strict: bool = False,
          force: bool = False, opener: Opener = urllib.request.urlopen, log: Callable[[str], None] = print) -> Check:
    """Make ``res`` present and verified under ``root``; returns the final :class:`Check`.

    Skips a resource that is already present and verified (unless ``force``). Downloads into ``DEST.part``,
    checks size and checksum, then renames (atomic on one file system) — a mismatch deletes the partial file
    and raises :class:`ChecksumError`, leaving no ``DEST``. An unverifiable file (no published checksum) is
    kept with a loud UNVERIFIED line, or refused with ``strict=True``. Archives are extracted
    (:func:`extract_zip`), stamped, and deleted unless ``keep_archive``. A manual resource raises
    :class:`ManualDownloadRequired` with its instructions when it is missing.
    """
    root = Path(root)
    if res.how == "manual":
        st = status(res, root)
        if st.status == "missing":
            raise ManualDownloadRequired(f"{res.name}: {res.manual.replace('ROOT', str(root))}")
        return st
    if not force:
        st = status(res, root)
        if st.status == "ok" or (st.status == "unverified" and not strict):
            log(f"[skip] {res.name}: present ({st.detail})")
            return st
        if st.status == "mismatch":
            log(f"[redo] {res.name}: {st.detail}")
    dest = root / res.dest
    part = dest.with_name(dest.name + ".part")
    if res.is_archive and dest.is_file():
        st = check_file(dest, res)  # a kept archive: re-extract without downloading again
    else:
        errors = []
        for url in res.urls:
            try:
                log(f"[get ] {res.name}: {url}")
                download_url(url, part, expected_size=res.size, opener=opener)
                break
            except (OSError, ValueError) as err:  # urllib.error.URLError is an OSError
                errors.append(f"{url}: {err}")
                log(f"[fail] {res.name}: {url}: {err}")
        else:
            if res.gdrive_id:
                log(f"[get ] {res.name}: Google Drive id {res.gdrive_id}")
                _gdrive_download(res.gdrive_id, part, opener=opener)
            else:
                raise RuntimeError(f"could not download {res.name} from any of its URLs: {errors}")
        st = check_file(part, res)
        if st.status == "mismatch":
            part.unlink()
            raise ChecksumError(f"{res.name}: downloaded file rejected ({st.detail}); source: "
                                f"{res.checksum_source}")
        if st.status == "unverified" and not Path(res.dest).suffix.startswith(".htm") and is_html(part):
            part.unlink()  # a sign-in, quota or error page saved in place of the file: nothing checks it otherwise
            raise ChecksumError(f"{res.name}: the server answered with an HTML page, not the file; nothing was "
                                f"saved. Download it by hand ({' | '.join(res.urls) or res.gdrive_id}) and save it "
                                f"as {dest}")
        if st.status == "unverified":
            if strict:
                part.unlink()
                raise ChecksumError(f"{res.name}: {st.detail}; refused because strict=True")
            log(f"[WARN] {res.name}: {st.detail}")
        os.replace(part, dest)
    if st.status == "mismatch":
        raise ChecksumError(f"{res.name}: {dest} ({st.detail}); delete it and run again")
    if res.is_archive:
        log(f"[zip ] {res.name}: extracting into {root / res.extract_to}")
        own = _own_folder(res)
        try:
            listing = zip_listing(dest, only=own)
            extract_zip(dest, root / res.extract_to, only=own, log=log)
        except ArchiveError as err:
            refused = dest.with_name(dest.name + ".refused")
            os.replace(dest, refused)  # kept to look at, out of the way of the next fetch
            raise ArchiveError(f"{res.name}: {err} (moved aside to {refused.name})") from None
        if not (root / res.extracted).exists():
            raise RuntimeError(f"{res.name}: extracting {dest} did not create {res.extracted}; the archive's layout "
                               f"differs from what the manifest expects")
        sha, md5, _ = file_digests(dest) if res.checksum_kind == "md5" else (st.sha256, None, None)
        stamp = {"name": res.name, "sha256": sha, "md5": md5, "kind": res.checksum_kind or "unverified",
                 "files": listing}
        stamp_path = _stamp_path(root, res)
        tmp = stamp_path.with_name(stamp_path.name + ".part")
        tmp.write_text(json.dumps(stamp) + "\n")
        os.replace(tmp, stamp_path)  # a kill leaves the old stamp or the new one, never half of one
        if not keep_archive:
            dest.unlink()
        st = status(res, root)
    log(f"[ ok ] {res.name}: {st.detail}" if st.status == "ok" else f"[done] {res.name}: {st.detail}")
    return st


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------


def _size_text(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def manifest_table(resources: Sequence[Resource] | None = None) -> str:
    """The manifest as a plain-text table: name, destination, size, how it is fetched, checksum and source."""
    resources = list(MANIFEST.values()) if resources is None else list(resources)
    lines = []
    for r in resources:
        where = " | ".join(r.urls) or (f"gdrive:{r.gdrive_id}" if r.gdrive_id else "by hand (see below)")
        digest = f"sha256 {r.sha256}" if r.sha256 else f"md5 {r.md5}" if r.md5 else "no checksum"
        lines += [f"{r.name}  ->  ROOT/{r.dest}   [{_size_text(r.size)}, {r.how}]",
                  f"    {r.description}",
                  f"    from: {where}" + (f"  (also gdrive:{r.gdrive_id})" if r.gdrive_id and r.urls else ""),
                  f"    {digest}; source: {r.checksum_source}"]
        if r.extract_to:
            lines.append(f"    zip: extracted into ROOT/{r.extract_to}, giving ROOT/{r.extracted}")
    lines.append("groups: " + "; ".join(f"{g} = {' '.join(m)}" for g, m in GROUPS.items() if g != "all"))
    return "\n".join(lines)


def manual_instructions(resources: Sequence[Resource], root: str | os.PathLike) -> str:
    """What must be fetched by hand among ``resources`` (and is not yet present under ``root``)."""
    out = []
    for r in resources:
        if r.how == "manual" and status(r, root).status == "missing":
            out.append(f"* {r.name}: {r.manual.replace('ROOT', str(root))}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infodecomp.data.download",
                                description="Fetch and verify the external data of the infodecomp experiments.")
    p.add_argument("names", nargs="*", help=f"resources or groups ({', '.join(GROUPS)}); default: coco-tables")
    p.add_argument("--root", default=DEFAULT_ROOT, help="data root (default: %(default)s)")
    p.add_argument("--list", action="store_true", help="print the manifest and exit")
    p.add_argument("--verify", action="store_true",
                   help="check what is present and download nothing; with no names, every resource that has "
                        "anything under --root")
    p.add_argument("--deep", action="store_true",
                   help="with --verify: also compare every extracted file's CRC-32 with its archive's (reads all)")
    p.add_argument("--keep-archives", action="store_true", help="keep zip files after extracting them")
    p.add_argument("--strict", action="store_true", help="refuse files that have no published checksum")
    p.add_argument("--force", action="store_true", help="download again even when present and verified")
    a = p.parse_args(argv)
    if a.list:
        print(manifest_table(resolve(a.names) if a.names else None))
        manual = [r for r in (resolve(a.names) if a.names else MANIFEST.values()) if r.how == "manual"]
        if manual:
            print("\nby hand:\n" + "\n".join(f"* {r.name}: {r.manual}" for r in manual))
        return 0
    if a.deep and not a.verify:
        p.error("--deep only applies to --verify")
    root = Path(a.root)
    if a.verify:
        return _verify(resolve(a.names) if a.names else None, root, strict=a.strict, deep=a.deep)
    resources = resolve(a.names or ["coco-tables"])
    bad = 0
    for r in resources:
        if r.how == "manual":
            continue
        try:
            fetch(r, root, keep_archive=a.keep_archives, strict=a.strict, force=a.force)
        except (ChecksumError, ArchiveError, RuntimeError, OSError, ValueError) as err:  # the next one goes on
            print(f"[FAIL] {r.name}: {err}", file=sys.stderr)
            bad += 1
    manual = manual_instructions(resources, root)
    if manual:
        print("\nMust be fetched by hand:\n" + manual)
        bad += 1
    return 1 if bad else 0


def on_disk(res: Resource, root: str | os.PathLike) -> list[Path]:
    """Whatever of ``res`` exists under ``root``: the file, a partial download, the extracted path, the stamp."""
    root = Path(root)
    candidates = [root / res.dest, (root / res.dest).with_name(Path(res.dest).name + ".part")]
    if res.is_archive:
        candidates += [root / res.extracted, _stamp_path(root, res)]
    return [p for p in candidates if p.exists()]


def _verify(resources: Sequence[Resource] | None, root: Path, *, strict: bool, deep: bool) -> int:
    """``--verify``: the named resources, or (no names) every resource with anything under ``root``."""
    tag = {"ok": "[ ok ]", "unverified": "[UNVERIFIED]", "mismatch": "[MISMATCH]", "missing": "[MISSING]"}
    named = resources is not None
    if not named:
        resources = [r for r in MANIFEST.values() if on_disk(r, root)]
        if not resources:
            print(f"[MISSING] nothing of the manifest is under {root} (fetch with `python -m "
                  f"infodecomp.data.download NAMES --root {root}`; see --list)")
            return 1
    bad = 0
    for r in resources:
        st = status(r, root, deep=deep)
        print(f"{tag[st.status]} {r.name}: {st.detail}")
        bad += st.status in ("mismatch", "missing") or (strict and st.status == "unverified")
        part = (root / r.dest).with_name(Path(r.dest).name + ".part")
        if part.exists():
            print(f"[PARTIAL] {r.name}: {part} is an interrupted download ({part.stat().st_size:,} bytes); fetching "
                  "again resumes it")
    if not named:
        absent = [r.name for r in MANIFEST.values() if r not in resources]
        if absent:
            print(f"(not under {root}, so not checked: {', '.join(absent)})")
    manual = manual_instructions(resources, root)
    if manual:
        print("\nMust be fetched by hand:\n" + manual)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
