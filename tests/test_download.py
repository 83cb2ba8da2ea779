"""Tests of infodecomp.data.download — all offline: file:// URLs, fake openers, local zips; never the network."""

import hashlib
import io
import json
import os
import re
import zipfile
from pathlib import Path

import pytest

from infodecomp.data import download as D

SHARED = Path(os.environ.get("INFODECOMP_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared_root() -> Path:
    """A data root whose ``coco/`` holds the reference CSVs (env INFODECOMP_SHARED_DATA may name the root or
    its coco folder); skips when absent."""
    for root in (SHARED, SHARED.parent):
        if (root / "coco" / "COCO-IT.csv").is_file():
            return root
    pytest.skip(f"shared reference tables not found under {SHARED} (set INFODECOMP_SHARED_DATA)")


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def res(tmp_path, payload: bytes, **kw) -> D.Resource:
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    kw.setdefault("sha256", sha(payload))
    return D.Resource("test-file", "sub/file.bin", "a test file", urls=(src.as_uri(),), **kw)


# ------------------------------------------------------------------------------------------------ manifest


def test_manifest_is_complete_and_honest():
    assert {"coco-it-csv", "coco100-it-csv", "coco-wl-csv", "coco-val2017", "coco-annotations2017",
            "coco-karpathy-test", "coco-val2014", "vg-relation-json", "vg-attribution-json", "vg-images",
            "flickr30k-test", "flickr30k-images"} <= set(D.MANIFEST)
    for r in D.MANIFEST.values():
        assert r.checksum_source, r.name
        if r.sha256:
            assert re.fullmatch(r"[0-9a-f]{64}", r.sha256), r.name
        if r.md5:
            assert re.fullmatch(r"[0-9a-f]{32}", r.md5), r.name
        if r.checksum_kind is None:  # no checksum: the manifest must say so, not pretend
            assert "none published" in r.checksum_source, r.name
        if r.how == "manual":
            assert r.manual and not r.urls
        else:
            assert r.urls or r.gdrive_id, r.name
            assert all(u.startswith(("http://", "https://")) for u in r.urls), r.name
        assert (r.extract_to is None) == (r.extracted is None), r.name
    for g, members in D.GROUPS.items():
        assert set(members) <= set(D.MANIFEST), g
    # the tables are pinned to a commit of the reference repository, not a branch
    for n in D.GROUPS["coco-tables"]:
        assert D.REFERENCE_COMMIT in D.MANIFEST[n].urls[0] and "/main/" not in D.MANIFEST[n].urls[0]
    assert D.MANIFEST["vg-images"].gdrive_id == "1qaPlrwhGNMrR3a11iopZUT_GPP_LrgP9"
    assert [r.name for r in D.resolve(["coco-order", "coco-karpathy-test"])] == ["coco-karpathy-test", "coco-val2014"]
    with pytest.raises(ValueError, match="unknown data resource 'nope'"):
        D.resolve(["nope"])


def test_shared_tables_match_the_manifest_checksums(tmp_path):
    root = shared_root()
    for n in D.GROUPS["coco-tables"]:
        r = D.MANIFEST[n]
        st = D.check_file(root / r.dest, r)
        assert st.status == "ok", st.detail
        assert D.status(r, root).status == "ok"
    # a file with one byte changed is caught
    r = D.MANIFEST["coco-wl-csv"]
    data = bytearray((root / r.dest).read_bytes())
    data[100] ^= 1
    (tmp_path / "COCO-WL.csv").write_bytes(bytes(data))
    assert D.check_file(tmp_path / "COCO-WL.csv", r).status == "mismatch"


# ------------------------------------------------------------------------------------------------ fetching


def test_fetch_file_url_is_atomic_verified_and_skipped_when_present(tmp_path):
    payload = b"hello table\n" * 1000
    r = res(tmp_path, payload, size=len(payload))
    root = tmp_path / "root"
    logs = []
    st = D.fetch(r, root, log=logs.append)
    assert st.status == "ok"
    assert (root / "sub/file.bin").read_bytes() == payload
    assert not (root / "sub/file.bin.part").exists()
    logs.clear()
    st = D.fetch(r, root, log=logs.append)  # present and verified: no download
    assert st.status == "ok" and any(line.startswith("[skip]") for line in logs)
    assert not any(line.startswith("[get ]") for line in logs)


def test_checksum_mismatch_leaves_nothing_behind(tmp_path):
    payload = b"the real bytes"
    r = res(tmp_path, payload, sha256=sha(b"other bytes"))
    root = tmp_path / "root"
    with pytest.raises(D.ChecksumError, match="sha256"):
        D.fetch(r, root, log=lambda s: None)
    assert not (root / "sub/file.bin").exists() and not (root / "sub/file.bin.part").exists()
    r2 = res(tmp_path, payload, size=len(payload) + 1)
    with pytest.raises(D.ChecksumError, match="size"):
        D.fetch(r2, root, log=lambda s: None)
    assert not (root / "sub/file.bin").exists()
    # md5-only resources are checked with md5
    r3 = res(tmp_path, payload, sha256=None, md5=hashlib.md5(b"x").hexdigest())
    with pytest.raises(D.ChecksumError, match="md5"):
        D.fetch(r3, root, log=lambda s: None)


def test_unverified_files_are_reported_loudly_or_refused(tmp_path):
    payload = b"no checksum anywhere"
    r = res(tmp_path, payload, sha256=None)
    root = tmp_path / "root"
    with pytest.raises(D.ChecksumError, match="strict"):
        D.fetch(r, root, strict=True, log=lambda s: None)
    assert not (root / "sub/file.bin").exists()
    logs = []
    st = D.fetch(r, root, log=logs.append)
    assert st.status == "unverified" and sha(payload) in st.detail
    assert any("UNVERIFIED" in line and sha(payload) in line for line in logs)


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, status: int, length: int | None = None):
        super().__init__(data)
        self.status = status
        self.headers = {} if length is None else {"Content-Length": str(length)}

    def getcode(self):
        return self.status


def test_resume_uses_range_requests_and_restarts_when_ignored(tmp_path):
    payload = bytes(range(256)) * 40
    r = D.Resource("x", "x.bin", "x", urls=("https://example.invalid/x.bin",), sha256=sha(payload), size=len(payload))
    seen = []

    def honours_range(req, timeout):
        rng = req.get_header("Range")
        seen.append(rng)
        start = int(rng[len("bytes="):-1]) if rng else 0
        return FakeResponse(payload[start:], 206 if rng else 200, len(payload) - start)

    root = tmp_path / "a"
    root.mkdir()
    (root / "x.bin.part").write_bytes(payload[:1000])  # a download killed half-way
    assert D.fetch(r, root, opener=honours_range, log=lambda s: None).status == "ok"
    assert seen == ["bytes=1000-"] and (root / "x.bin").read_bytes() == payload

    def ignores_range(req, timeout):
        return FakeResponse(payload, 200, len(payload))

    root = tmp_path / "b"
    root.mkdir()
    (root / "x.bin.part").write_bytes(b"garbage!" * 10)
    assert D.fetch(r, root, opener=ignores_range, log=lambda s: None).status == "ok"
    assert (root / "x.bin").read_bytes() == payload
    with pytest.raises(ValueError, match="scheme"):
        D.download_url("ftp://example.invalid/x", tmp_path / "y.part")


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_zip_archives_are_extracted_stamped_and_removed(tmp_path):
    data = _zip_bytes({"val2017/000000000139.jpg": b"jpeg1", "val2017/000000000285.jpg": b"jpeg2"})
    src = tmp_path / "val2017.zip"
    src.write_bytes(data)
    r = D.Resource("imgs", "coco/val2017.zip", "images", urls=(src.as_uri(),), sha256=sha(data),
                   extract_to="coco", extracted="coco/val2017")
    root = tmp_path / "root"
    assert D.status(r, root).status == "missing"
    assert D.fetch(r, root, log=lambda s: None).status == "ok"
    assert (root / "coco/val2017/000000000285.jpg").read_bytes() == b"jpeg2"
    assert not (root / "coco/val2017.zip").exists()  # archive deleted after a verified extraction
    assert not list((root / "coco").glob(".extract-*"))
    assert D.status(r, root).status == "ok"  # from the stamp
    logs = []
    D.fetch(r, root, log=logs.append)
    assert logs[0].startswith("[skip]")
    # an extracted folder whose stamp records another archive is flagged
    D._stamp_path(root, r).write_text("0" * 64 + " sha256 imgs\n")
    assert D.status(r, root).status == "mismatch"


def test_zip_slip_is_refused(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(_zip_bytes({"../evil.txt": b"x"}))
    with pytest.raises(ValueError, match="outside"):
        D.extract_zip(bad, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


# ------------------------------------------------------------------------------------------------ command line


def test_cli_list_prints_every_resource_with_its_checksum_source(capsys):
    assert D.main(["--list"]) == 0
    out = capsys.readouterr().out
    for r in D.MANIFEST.values():
        assert r.name in out
    assert "tensorflow/datasets" in out and "LAVIS" in out and "none published" in out
    assert "3dd361d39e3c2d5846ee85dea54f1c7c8b7ccb4f5e88319e46c6e69d88024b99" in out
    assert D.FLICKR30K_FORM in out and "gdrive:1kX2iCHEv0CADL8dSO1nMdW-V0NqIAiP3" in out


def test_cli_prints_manual_instructions(tmp_path, capsys):
    root = tmp_path / "data"
    assert D.main(["flickr30k-images", "--root", str(root)]) == 1  # nothing downloaded, data incomplete
    out = capsys.readouterr().out
    assert "Must be fetched by hand" in out and D.FLICKR30K_FORM in out
    assert str(root / "aro/flickr/flickr30k-images") in out  # ROOT replaced by the real path
    with pytest.raises(D.ManualDownloadRequired, match="forms.illinois.edu"):
        D.fetch(D.MANIFEST["flickr30k-images"], root)
    (root / "aro/flickr/flickr30k-images").mkdir(parents=True)
    (root / "aro/flickr/flickr30k-images/1007129816.jpg").write_bytes(b"jpeg")
    assert D.main(["flickr30k-images", "--root", str(root)]) == 0
    assert "Must be fetched by hand" not in capsys.readouterr().out


def test_cli_verify_reports_missing(tmp_path, capsys):
    assert D.main(["coco-tables", "--root", str(tmp_path), "--verify"]) == 1
    assert capsys.readouterr().out.count("[MISSING]") == 3


def test_cli_verify_shared_tables(capsys):
    root = shared_root()
    assert D.main(["coco-tables", "--root", str(root), "--verify"]) == 0
    assert capsys.readouterr().out.count("[ ok ]") == 3


# ------------------------------------------------------------------------------------------------ issue 14


def _fetched_zip(tmp_path, keep=False):
    members = {"val2017/000000000139.jpg": b"jpeg-one" * 10, "val2017/000000000285.jpg": b"jpeg-two" * 10}
    data = _zip_bytes(members)
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / "val2017.zip"
    src.write_bytes(data)
    r = D.Resource("imgs", "coco/val2017.zip", "images", urls=(src.as_uri(),), sha256=sha(data), size=len(data),
                   extract_to="coco", extracted="coco/val2017")
    root = tmp_path / "root"
    assert D.fetch(r, root, keep_archive=keep, log=lambda s: None).status == "ok"
    return r, root


def test_verify_checks_the_extracted_files_not_only_the_stamp(tmp_path):
    """Item 4: deleted or truncated images of an extracted archive still reported ok."""
    r, root = _fetched_zip(tmp_path)
    st = D.status(r, root)
    assert st.status == "ok" and "its 2 files are all there" in st.detail
    img = root / "coco/val2017/000000000285.jpg"
    img.write_bytes(img.read_bytes()[:7])  # truncated
    st = D.status(r, root)
    assert st.status == "mismatch" and "000000000285.jpg: 7 bytes, expected 80" in st.detail
    img.unlink()
    st = D.status(r, root)
    assert st.status == "mismatch" and "val2017/000000000285.jpg: missing" in st.detail
    # same size, other bytes: only the CRC check (--deep) sees it
    r, root = _fetched_zip(tmp_path / "b")
    img = root / "coco/val2017/000000000139.jpg"
    img.write_bytes(b"x" * 80)
    assert D.status(r, root).status == "ok"
    assert D.status(r, root, deep=True).status == "mismatch" and "CRC-32" in D.status(r, root, deep=True).detail


def test_verify_without_names_checks_everything_that_is_there(tmp_path, monkeypatch, capsys):
    """Item 4: with no names --verify checked only the three CSV tables, so a corrupt val2017.zip went unreported."""
    r, root = _fetched_zip(tmp_path, keep=True)
    table = D.Resource("table", "coco/T.csv", "a table", urls=("https://example.invalid/T.csv",),
                       sha256=sha(b"t\n"))
    (root / "coco/T.csv").write_bytes(b"t\n")
    absent = D.Resource("absent", "x/absent.bin", "not fetched", urls=("https://example.invalid/a",), sha256="0" * 64)
    monkeypatch.setattr(D, "MANIFEST", {x.name: x for x in (table, r, absent)})
    assert D.main(["--root", str(root), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "[ ok ] table" in out and "[ ok ] imgs" in out and "not checked: absent" in out
    archive = root / "coco/val2017.zip"  # the kept archive gets damaged
    archive.write_bytes(archive.read_bytes()[:-10])
    assert D.main(["--root", str(root), "--verify"]) == 1
    out = capsys.readouterr().out
    assert "[MISMATCH] imgs: the kept archive is damaged" in out
    assert D.main(["--root", str(tmp_path / "empty"), "--verify"]) == 1
    assert "nothing of the manifest is under" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ issue 29 B


def _zip_file(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _archive_res(src: Path, name="vg-imgs", **kw) -> D.Resource:
    """An unverified archive resource (no published checksum), like ARO's vg-images."""
    return D.Resource(name, f"aro/vg/{name}.zip", "images", urls=(src.as_uri(),), extract_to="aro/vg",
                      extracted="aro/vg/images", **kw)


def test_archive_bombs_are_refused_before_anything_is_written(tmp_path):
    """A small unverified archive that extracts to 1000× its size, or past the file-count and size limits."""
    bomb = _zip_file(tmp_path / "bomb.zip", {"images/zeros.bin": bytes(20 * 2**20)})
    assert bomb.stat().st_size < 100_000
    with pytest.raises(D.ArchiveError, match=r"compression, over the limit of 100×"):
        D.extract_zip(bomb, tmp_path / "out")
    assert not (tmp_path / "out" / "images").exists()
    many = _zip_file(tmp_path / "many.zip", {f"images/{i}.jpg": b"x" for i in range(5)})
    with pytest.raises(D.ArchiveError, match=r"holds 5 files, over the limit of 4"):
        D.extract_zip(many, tmp_path / "out", max_files=4)
    with pytest.raises(D.ArchiveError, match=r"would extract to 5 bytes, over the limit of 4"):
        D.extract_zip(many, tmp_path / "out", max_bytes=4)
    assert D.extract_zip(many, tmp_path / "out") == ["images"]
    # through fetch: refused, moved aside, no extracted folder, no stamp
    r = _archive_res(bomb)
    root = tmp_path / "root"
    with pytest.raises(D.ArchiveError, match="compression"):
        D.fetch(r, root, log=lambda s: None)
    assert not (root / "aro/vg/images").exists() and (root / "aro/vg/vg-imgs.zip.refused").is_file()


def test_an_archive_never_replaces_files_beside_its_own_folder(tmp_path):
    """An archive whose top level holds visual_genome_relation.json replaced the user's annotation file."""
    src = _zip_file(tmp_path / "src.zip", {"images/1.jpg": b"jpeg", "visual_genome_relation.json": b"[]",
                                           "__MACOSX/._1.jpg": b"junk"})
    root = tmp_path / "root"
    mine = root / "aro/vg/visual_genome_relation.json"
    mine.parent.mkdir(parents=True)
    mine.write_text('[{"mine": 1}]')
    logs = []
    st = D.fetch(_archive_res(src), root, log=logs.append)
    assert st.status == "unverified" and "its 1 files are all there" in st.detail
    assert mine.read_text() == '[{"mine": 1}]'
    assert (root / "aro/vg/images/1.jpg").read_bytes() == b"jpeg"
    assert any("left out 1 member(s) outside its folder images/: visual_genome_relation.json" in x for x in logs)


def test_a_refused_archive_or_a_web_page_is_a_fail_line_and_download_goes_on(tmp_path, monkeypatch, capsys):
    slip = _zip_file(tmp_path / "slip.zip", {"images/1.jpg": b"x", "../../evil.txt": b"x"})
    absolute = _zip_file(tmp_path / "abs.zip", {"/tmp/evil-infodecomp.txt": b"x"})
    page = tmp_path / "page.zip"
    page.write_bytes(b"<!DOCTYPE html><html><body>Google Drive - virus scan warning</body></html>")
    table = tmp_path / "t.csv"
    table.write_bytes(b"t\n")
    resources = [_archive_res(slip, "a"), _archive_res(absolute, "b"), _archive_res(page, "c"),
                 D.Resource("table", "coco/T.csv", "a table", urls=(table.as_uri(),), sha256=sha(b"t\n"))]
    monkeypatch.setattr(D, "MANIFEST", {r.name: r for r in resources})
    root = tmp_path / "root"
    assert D.main(["a", "b", "c", "table", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "[FAIL] a: " in err and "'../../evil.txt'" in err and "outside" in err
    assert "[FAIL] b: " in err and "absolute path" in err
    assert "[FAIL] c: " in err and "HTML page" in err
    assert "Traceback" not in err
    assert (root / "coco/T.csv").read_bytes() == b"t\n"  # the resource after the failures was fetched
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil-infodecomp.txt").exists()


def test_a_stamp_whose_files_is_not_a_dict_is_a_mismatch(tmp_path, monkeypatch, capsys):
    r, root = _fetched_zip(tmp_path)
    stamp = D._stamp_path(root, r)
    info = json.loads(stamp.read_text())
    for bad in ("not-a-dict", {"val2017/a.jpg": "big"}, ["x"], {"../../etc/hostname": [1, 0]}):
        stamp.write_text(json.dumps({**info, "files": bad}))
        st = D.status(r, root, deep=True)
        assert st.status == "mismatch", bad
    stamp.write_text(json.dumps({**info, "files": "not-a-dict"}))
    monkeypatch.setattr(D, "MANIFEST", {r.name: r})
    assert D.main(["imgs", "--root", str(root), "--verify"]) == 1
    out = capsys.readouterr().out
    assert "[MISMATCH] imgs: the stamp" in out and "is damaged" in out


def test_verify_refuses_annotations_naming_files_outside_their_folder(tmp_path):
    """A flickr30k_test.json naming /etc/hostname passed --verify as "all images there"."""
    root = tmp_path / "data"
    folder = root / "aro/flickr/flickr30k-images"
    folder.mkdir(parents=True)
    (folder / "1.jpg").write_bytes(b"jpeg")
    listed = root / "aro/flickr/flickr30k_test.json"
    for name in ("/etc/hostname", "../../../../../etc/hostname"):
        listed.write_text(json.dumps([{"image": "flickr30k-images/1.jpg", "caption": "a"},
                                      {"image": name, "caption": "b"}]))
        st = D.status(D.MANIFEST["flickr30k-images"], root)
        assert st.status == "mismatch" and "not a file inside" in st.detail, st.detail
    listed.write_text(json.dumps([{"image": "flickr30k-images/1.jpg", "caption": "a"}]))
    assert D.status(D.MANIFEST["flickr30k-images"], root).status == "unverified"


def test_a_member_larger_than_it_declares_is_an_archive_error_not_a_traceback(tmp_path):
    """Further case: a member whose header under-states its size (a bomb that lies) stops at the declared size
    with zipfile's BadZipFile, which ended download with a traceback."""
    import struct

    data = bytearray(_zip_bytes({"images/a.bin": bytes(100_000)}))
    struct.pack_into("<I", data, data.find(b"PK\x03\x04") + 22, 10)  # local header: 10 bytes
    struct.pack_into("<I", data, data.find(b"PK\x01\x02") + 24, 10)  # central directory: 10 bytes
    lie = tmp_path / "lie.zip"
    lie.write_bytes(bytes(data))
    with pytest.raises(D.ArchiveError, match="cannot be extracted"):
        D.extract_zip(lie, tmp_path / "out")
    assert not (tmp_path / "out" / "images").exists() and not list((tmp_path / "out").glob(".extract-*"))


def test_a_web_page_saved_in_place_of_an_unverified_file_is_refused(tmp_path):
    """Further case: an unverified JSON (no published checksum) fetched as a sign-in page was kept as UNVERIFIED."""
    page = tmp_path / "page.json"
    page.write_bytes(b"\n  <!DOCTYPE html><html><title>Sign in</title></html>")
    r = D.Resource("ann", "aro/flickr/flickr30k_test.json", "annotations", urls=(page.as_uri(),))
    with pytest.raises(D.ChecksumError, match="answered with an HTML page"):
        D.fetch(r, tmp_path / "root", log=lambda s: None)
    assert not list((tmp_path / "root").rglob("flickr30k_test.json*"))


def test_an_html_page_kept_as_an_archive_is_named(tmp_path):
    page = tmp_path / "page.zip"
    page.write_bytes(b"<html><body>quota exceeded</body></html>")
    with pytest.raises(D.ArchiveError, match=r"is an HTML page"):
        D.extract_zip(page, tmp_path / "out")
