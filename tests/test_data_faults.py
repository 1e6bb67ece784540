"""Data faults: a truncated or unreadable image, a missing split file, wrong counts, a missing class folder.

`langdml data check` and trial start (build_dataset, train_trial) both name the file and what is wrong, in
one sentence, and no trial trains on such a dataset.
"""

from __future__ import annotations

import io
import os
import shutil

import pytest
from PIL import Image
from test_datasets import JPEG, make_cub, make_folder, make_sop, write_images

from langdml_core.config import DataConfig
from langdml_core.data import build_dataset, cub200
from langdml_core.data.check import decode_problem, quick_problem
from langdml_core.errors import DatasetError
from langdml_core.runner.cli import main


def encoded(fmt: str, size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    pixels = Image.effect_noise(size, 60).convert("RGB")  # noise: no run of bytes repeats by chance
    pixels.save(buffer, format=fmt)
    return buffer.getvalue()


def one_sentence(message: str) -> None:
    message = message.removesuffix("\n")
    assert "\n" not in message and message.endswith(".")


def data_check(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["data", "check", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


# ---- the per-file check ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "WEBP"])
def test_whole_images_pass_and_truncated_ones_are_named(tmp_path, fmt):
    data = encoded(fmt)
    whole, cut = tmp_path / "whole.img", tmp_path / "cut.img"
    whole.write_bytes(data)
    cut.write_bytes(data[: len(data) * 2 // 3])  # a download that stopped two thirds in
    assert quick_problem(str(whole)) is None and decode_problem(str(whole)) is None
    assert quick_problem(str(cut)).startswith("cannot be decoded as an image")
    assert decode_problem(str(cut)).startswith("cannot be decoded as an image")


def test_empty_unreadable_and_not_an_image(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "folder.jpg").mkdir()  # exists, but open() fails: what an unreadable file looks like as root
    (tmp_path / "text.jpg").write_text("<html>404 Not Found</html>")  # a mirror's error page saved as .jpg
    assert quick_problem(str(tmp_path / "empty.jpg")) == "is empty (0 bytes)"
    assert quick_problem(str(tmp_path / "folder.jpg")) == "cannot be read (Is a directory)"
    assert quick_problem(str(tmp_path / "text.jpg")).startswith("cannot be decoded as an image")
    assert quick_problem(str(tmp_path / "gone.jpg")) == "cannot be read (No such file or directory)"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_file_without_read_permission(tmp_path):
    path = tmp_path / "secret.jpg"
    path.write_bytes(JPEG)
    path.chmod(0)
    assert quick_problem(str(path)) == "cannot be read (Permission denied)"


def test_valid_files_the_quick_look_doubts_are_decoded_not_refused(tmp_path):
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(encoded("JPEG") + b"\x00" * 100)  # bytes after EOI: some cameras write these
    png_as_jpg = tmp_path / "really_png.jpg"
    png_as_jpg.write_bytes(encoded("PNG"))  # the format comes from the bytes, not the suffix
    tiff = tmp_path / "scan.jpg"
    tiff.write_bytes(encoded("TIFF"))  # a format without a quick rule: decoded in full
    for path in (padded, png_as_jpg, tiff):
        assert quick_problem(str(path)) is None


def test_the_quick_check_reads_headers_and_decode_finds_what_they_cannot(tmp_path):
    markers_only = tmp_path / "markers_only.jpg"
    markers_only.write_bytes(b"\xff\xd8\xff" + bytes(2000) + b"\xff\xd9")  # the right markers, no header
    assert quick_problem(str(markers_only)).startswith(
        "cannot be decoded as an image (UnidentifiedImageError"
    )
    data = encoded("JPEG", (64, 64))
    hollow = tmp_path / "hollow.jpg"  # a whole header, then zeros where the pixels were, then EOI
    hollow.write_bytes(data[:200] + bytes(len(data) - 202) + b"\xff\xd9")
    assert quick_problem(str(hollow)) is None  # the trial-start check trusts markers and header
    assert decode_problem(str(hollow)).startswith("cannot be decoded as an image (OSError")


def test_an_image_too_large_to_decode_is_refused_by_the_quick_check(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    path.write_bytes(encoded("PNG", (40, 30)))
    assert quick_problem(str(path)) is None
    # Pillow refuses to decode beyond 2 x MAX_IMAGE_PIXELS (a 14000 x 14000 PNG by default): shrink the limit
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    assert quick_problem(str(path)).startswith(
        "is too large to decode (DecompressionBombError: Image size (1200"
    )


def test_a_hollow_image_is_named_when_a_batch_meets_it(tmp_path):
    make_folder(tmp_path)
    data = encoded("JPEG", (64, 64))
    bad = tmp_path / "test" / "snow_owl" / "3.jpg"
    bad.write_bytes(data[:200] + bytes(len(data) - 202) + b"\xff\xd9")
    test = build_dataset(DataConfig(name="folder", root=str(tmp_path))).test  # passes the start check
    with pytest.raises(DatasetError) as err:
        [test.load(i) for i in range(len(test))]
    one_sentence(str(err.value))
    assert f"image '{bad}' of the test split cannot be decoded (OSError" in str(err.value)
    assert "langdml data check DATASET --decode" in str(err.value)


def test_symlink_loops_in_a_folder_dataset_are_named(tmp_path):
    make_folder(tmp_path)
    loop = tmp_path / "train" / "loop"
    loop.symlink_to("loop")  # a class folder that links to itself
    with pytest.raises(DatasetError) as err:
        build_dataset(DataConfig(name="folder", root=str(tmp_path)))
    one_sentence(str(err.value))
    assert f"'{loop}' cannot be followed (Too many levels of symbolic links)" in str(err.value)
    loop.unlink()
    image = tmp_path / "train" / "red_fox" / "self.jpg"
    image.symlink_to("self.jpg")  # an image that links to itself
    with pytest.raises(DatasetError, match=f"image '{image}' cannot be followed"):
        build_dataset(DataConfig(name="folder", root=str(tmp_path)))


def test_a_class_name_that_is_not_utf8_is_refused_before_the_language_model(tmp_path):
    make_folder(tmp_path)
    latin1 = os.path.join(os.fsencode(tmp_path / "train"), b"caf\xe9_owl")  # a Latin-1 folder name
    os.mkdir(latin1)
    shutil.copy(tmp_path / "train" / "arctic_wolf" / "x.JPEG", os.path.join(latin1, b"1.jpg"))
    with pytest.raises(DatasetError) as err:
        build_dataset(DataConfig(name="folder", root=str(tmp_path)))
    one_sentence(str(err.value))
    assert "class name b'caf\\xe9 owl' is not valid UTF-8" in str(err.value)


# ---- trial start ---------------------------------------------------------------------------------------


def test_trial_start_refuses_a_truncated_image_naming_it(tmp_path):
    base = make_cub(tmp_path)
    bad = base / "images" / "102.Western_Wood_Pewee" / "img_1.jpg"
    bad.write_bytes(encoded("JPEG")[:300])
    (base / "images" / "001.Black_footed_Albatross" / "img_0.jpg").write_bytes(b"")
    with pytest.raises(DatasetError) as err:
        build_dataset(DataConfig(name="cub200", root=str(tmp_path), check_counts=False))
    message = str(err.value)
    one_sentence(message)
    assert "'" + str(base / "images" / "001.Black_footed_Albatross" / "img_0.jpg") + "'" in message
    assert "of the train split is empty (0 bytes)" in message
    assert "1 more unreadable images" in message and "langdml data check cub200 --root" in message


def test_no_trial_trains_on_a_broken_dataset(tmp_path):
    from conftest import tiny_trial

    from langdml_core.train import train_trial

    make_folder(tmp_path / "data")
    bad = tmp_path / "data" / "test" / "snow_owl" / "3.jpg"
    bad.write_bytes(JPEG[:-40])
    config = tiny_trial(tmp_path, **{"data.name": "folder", "data.root": str(tmp_path / "data")})
    with pytest.raises(DatasetError, match=f"image '{bad}' of the test split cannot be decoded"):
        train_trial(config)
    run = tmp_path / "run"
    # no metrics, no checkpoint (the lock file of the run directory stays, unlocked)
    assert sorted(p.name for p in run.iterdir()) == [".langdml.lock", "config.json"]


# ---- langdml data check --------------------------------------------------------------------------------


def test_data_check_passes_a_good_tree(tmp_path, capsys):
    make_cub(tmp_path)
    code, out, err = data_check(capsys, "cub200", "--root", str(tmp_path), "--no-check-counts", "--decode")
    assert code == 0 and err == ""
    assert "train 3 images / 2 classes, test 5 images / 2 classes" in out
    assert "8 image files decoded in full" in out and out.rstrip().endswith("OK")


def test_data_check_lists_every_bad_image_and_names_the_first(tmp_path, capsys):
    base = make_sop(tmp_path)
    truncated = base / "coffee_maker_final" / "333_0.JPG"
    truncated.write_bytes(JPEG[: len(JPEG) // 2])
    hollow = base / "bicycle_final" / "111_1.JPG"
    data = encoded("JPEG", (64, 64))
    hollow.write_bytes(data[:200] + bytes(len(data) - 202) + b"\xff\xd9")  # a whole header, no pixels
    code, _, err = data_check(capsys, "sop", "--root", str(tmp_path), "--no-check-counts")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2  # the quick check: the truncated file only
    assert lines[0].startswith(f"test: {truncated} cannot be decoded as an image (OSError: ")
    assert lines[1].startswith(f"error: sop: image '{truncated}' of the test split cannot be decoded")
    one_sentence(lines[1])
    code, _, err = data_check(capsys, "sop", "--root", str(tmp_path), "--no-check-counts", "--decode")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 3  # in full: the hollow one too, train split first
    assert lines[0].startswith(f"train: {hollow} cannot be decoded as an image (OSError")
    assert lines[1].startswith(f"test: {truncated} cannot be decoded")
    assert lines[2].startswith(f"error: sop: image '{hollow}' of the train split cannot be decoded")
    assert "(1 more unreadable images; `langdml data check sop --root " in lines[2]


def test_data_check_missing_split_file(tmp_path, capsys):
    base = make_sop(tmp_path)
    (base / "Ebay_test.txt").unlink()
    code, _, err = data_check(capsys, "sop", "--root", str(tmp_path), "--no-check-counts")
    assert code == 2 and f"annotation file '{base / 'Ebay_test.txt'}' is missing" in err
    base = make_cub(tmp_path / "cub")
    (base / "image_class_labels.txt").unlink()
    code, _, err = data_check(
        capsys, "cub200", "--root", str(base), "--layout", "official", "--no-check-counts"
    )
    assert code == 2 and f"'{base / 'image_class_labels.txt'}' is missing" in err
    make_folder(tmp_path / "mine")
    shutil.rmtree(tmp_path / "mine" / "test")
    code, _, err = data_check(capsys, "folder", "--root", str(tmp_path / "mine"))
    assert code == 2 and f"'{tmp_path / 'mine' / 'test'}' is not a directory" in err


def test_data_check_wrong_counts(tmp_path, capsys):
    make_cub(tmp_path)
    code, out, err = data_check(capsys, "cub200", "--root", str(tmp_path))
    assert code == 2 and out == ""
    assert "images: expected 11788, found 8" in err and "train_classes: expected 100, found 2" in err
    one_sentence(err.removeprefix("error: "))


def test_data_check_missing_class_folder_listed_in_annotations(tmp_path, capsys):
    base = make_cub(tmp_path)
    shutil.rmtree(base / "images" / "101.White_Pelican")
    code, _, err = data_check(capsys, "cub200", "--root", str(tmp_path), "--no-check-counts")
    assert code == 2
    assert f"folder '{base / 'images' / '101.White_Pelican'}', which holds images listed in" in err
    base = make_sop(tmp_path / "sop")
    shutil.rmtree(base / "bicycle_final")
    code, _, err = data_check(capsys, "sop", "--root", str(tmp_path / "sop"), "--no-check-counts")
    assert code == 2 and f"folder '{base / 'bicycle_final'}'" in err and "Ebay_train.txt" in err


@pytest.mark.parametrize("annotations", [True, False], ids=["official", "folders"])
def test_missing_class_folder_is_named_by_the_count_check(tmp_path, monkeypatch, capsys, annotations):
    """A full 200-class CUB (one image per class): without folder 037 the counts name class 37."""
    base = tmp_path / "CUB_200_2011"
    folders = {cid: f"{cid:03d}.Bird_{cid}" for cid in range(1, 201)}
    for name in folders.values():
        write_images(base / "images" / name, ["a.jpg"])
    if annotations:
        (base / "images.txt").write_text("".join(f"{c} {n}/a.jpg\n" for c, n in folders.items()))
        (base / "image_class_labels.txt").write_text("".join(f"{c} {c}\n" for c in folders))
        (base / "classes.txt").write_text("".join(f"{c} {n}\n" for c, n in folders.items()))
    counts = {
        "images": 200,
        "train_images": 100,
        "test_images": 100,
        "train_classes": 100,
        "test_classes": 100,
    }
    monkeypatch.setattr(cub200, "EXPECTED", counts)
    assert data_check(capsys, "cub200", "--root", str(tmp_path))[0] == 0
    shutil.rmtree(base / "images" / folders[37])
    if annotations:  # the annotation files still list its image: the folder itself is named
        (base / "images.txt").write_text("".join(f"{c} {n}/a.jpg\n" for c, n in folders.items() if c != 37))
    code, _, err = data_check(capsys, "cub200", "--root", str(tmp_path))
    assert code == 2 and "train_classes: expected 100, found 99" in err
    assert ("class 37 (Bird 37)" if annotations else "1 official class(es) without images: class 37") in err


def test_data_check_unknown_dataset_and_layout(tmp_path, capsys):
    code, _, err = data_check(capsys, "cub201", "--root", str(tmp_path))
    assert code == 2 and "Unknown dataset 'cub201' (did you mean 'cub200'?)" in err
    code, _, err = data_check(capsys, "cub200", "--root", str(tmp_path), "--layout", "oficial")
    assert code == 2 and "unknown layout 'oficial'" in err
