"""Tests of the two readers of data-named files in infodecomp.checks (issue 29 B): :func:`contained_path` (a path
read from data stays inside its root) and :func:`load_image` (the one image reader: size limit, EXIF orientation)."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from infodecomp.checks import MAX_IMAGE_PIXELS, contained_path, load_image
from infodecomp.experiments.probe import read_image


@pytest.mark.parametrize("rel", ["../outside/precious.txt", "a/../../b", "..", "/etc/hostname", "C:\\x",
                                 "\\\\server\\share\\x", "a\\..\\..\\b", "", "  ", ".", "a/\0b", None, 3])
def test_contained_path_refuses_what_leads_outside(rel):
    with pytest.raises(ValueError):
        contained_path("/data", rel, "image_path")


@pytest.mark.parametrize("rel, want", [("a.jpg", "a.jpg"), ("images/./x.jpg", "images/x.jpg"),
                                       ("images/../x.jpg", "x.jpg"), ("ünïcödé/猫 1.jpg", "ünïcödé/猫 1.jpg"),
                                       (".hidden/x", ".hidden/x"), ("..x/y", "..x/y")])
def test_contained_path_keeps_what_stays_inside(rel, want):
    assert contained_path("/data", rel) == Path("/data") / want


def test_contained_path_message_names_the_field_and_the_value():
    with pytest.raises(ValueError, match=r"_npz of row 3 is '\.\./x', which leads outside /store"):
        contained_path("/store", "../x", "_npz of row 3")


def _jpeg(image: Image.Image, orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    kw = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    image.save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def _left_red_right_blue(w=40, h=20) -> Image.Image:
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (230, 20, 20)
    a[:, w // 2:] = (20, 20, 230)
    return Image.fromarray(a)


@pytest.mark.parametrize("orientation, transpose", [(3, Image.Transpose.ROTATE_180),
                                                    (6, Image.Transpose.ROTATE_90),
                                                    (8, Image.Transpose.ROTATE_270),
                                                    (2, Image.Transpose.FLIP_LEFT_RIGHT)])
def test_exif_orientation_is_applied_at_the_one_reader(tmp_path, orientation, transpose):
    """A phone photo stored sideways (orientation 6) was analysed sideways, so "left of" was scored rotated."""
    upright = _left_red_right_blue()
    data = _jpeg(upright.transpose(transpose), orientation)  # stored so that the tag turns it upright
    for image in (load_image(data, "photo.jpg"), read_image(data, "photo.jpg")):
        a = np.asarray(image, dtype=float)
        assert image.size == (40, 20) and image.mode == "RGB"
        assert a[10, 3, 0] > 150 > a[10, 3, 2] and a[10, 36, 2] > 150 > a[10, 36, 0]
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    assert load_image(path).size == (40, 20)


def test_huge_images_are_refused_before_they_are_decoded(tmp_path):
    """A 97 kB PNG of 10000×10000 was accepted by read_image (+488 MB, only a DecompressionBombWarning)."""
    buf = io.BytesIO()
    Image.new("L", (10000, 10000)).save(buf, "PNG")
    assert len(buf.getvalue()) < 200_000
    for reader in (load_image, read_image):
        with pytest.raises(ValueError, match=r"'big.png' is an image of 10000×10000 = 100,000,000 pixels, over "
                                             r"the limit of 67,108,864 pixels"):
            reader(buf.getvalue(), "big.png")
    small = io.BytesIO()
    Image.new("RGB", (30, 10)).save(small, "PNG")
    with pytest.raises(ValueError, match="over the limit of 200 pixels"):
        load_image(small.getvalue(), "s.png", max_pixels=200)
    assert load_image(small.getvalue(), "s.png", max_pixels=300).size == (30, 10)
    assert MAX_IMAGE_PIXELS == 8192 * 8192


def test_empty_missing_and_foreign_files_get_clear_errors(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_image(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ValueError, match="not in an image format"):
        load_image(b"<html></html>", "page.png")
    with pytest.raises(TypeError, match="bytes or a path"):
        load_image(3)
    uni = tmp_path / "ünïcödé 猫.png"
    Image.new("RGB", (4, 4), (1, 2, 3)).save(uni)
    assert load_image(uni).getpixel((0, 0)) == (1, 2, 3)
