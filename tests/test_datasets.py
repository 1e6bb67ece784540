"""The file-based dataset loaders on tiny fixture trees: splits, labels, texts, ids and failure messages."""

from __future__ import annotations

import io
import os
from pathlib import Path

import paper_world
import pytest
from PIL import Image

from langdml_core.data import cars196, cub200, folder, sop
from langdml_core.data.base import DATASETS, DatasetError

_buffer = io.BytesIO()
Image.new("RGB", (8, 8), (200, 30, 30)).save(_buffer, format="JPEG")
JPEG = _buffer.getvalue()


def write_images(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(JPEG)
    return [folder / name for name in names]


def check_split(images, class_ids, class_texts, per_class) -> None:
    """Contiguous labels in class-id order, absolute existing paths, images sorted by (label, path)."""
    assert images.class_ids == class_ids
    assert images.class_texts == class_texts
    assert images.labels.tolist() == [c for c, n in enumerate(per_class) for _ in range(n)]
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in images.paths)
    assert list(zip(images.labels.tolist(), images.paths, strict=True)) == sorted(
        zip(images.labels.tolist(), images.paths, strict=True)
    )
    assert images.load(0).size == (8, 8)


def test_all_four_are_registered():
    for name, builder in [
        ("cub200", cub200.build_cub200),
        ("cars196", cars196.build_cars196),
        ("sop", sop.build_sop),
        ("folder", folder.build_folder),
    ]:
        assert DATASETS.get(name) is builder


# --- CUB200-2011 ---

CUB_CLASSES = {
    1: "001.Black_footed_Albatross",
    2: "002.Laysan_Albatross",
    101: "101.White_Pelican",
    102: "102.Western_Wood_Pewee",
}
CUB_PER_CLASS = {1: 2, 2: 1, 101: 3, 102: 2}


def make_cub(root: Path, annotations: bool = True) -> Path:
    base = root / "CUB_200_2011"
    rows = []
    for cid, folder_name in CUB_CLASSES.items():
        names = [f"img_{k}.jpg" for k in range(CUB_PER_CLASS[cid])]
        write_images(base / "images" / folder_name, names)
        rows += [(f"{folder_name}/{n}", cid) for n in names]
    if annotations:
        rows = rows[::-1]  # image ids not in class order: the loader must sort
        (base / "images.txt").write_text("".join(f"{i} {rel}\n" for i, (rel, _) in enumerate(rows, 1)))
        (base / "image_class_labels.txt").write_text(
            "".join(f"{i} {c}\n" for i, (_, c) in enumerate(rows, 1))
        )
        (base / "classes.txt").write_text("".join(f"{c} {n}\n" for c, n in CUB_CLASSES.items()))
        # The classification split, deliberately misleading: it would put classes 101/102 into training.
        (base / "train_test_split.txt").write_text(
            "".join(f"{i} {int(c > 100)}\n" for i, (_, c) in enumerate(rows, 1))
        )
    return base


def check_cub(ds) -> None:
    assert ds.name == "cub200" and ds.default_image_size == 224
    check_split(ds.train, [1, 2], ["Black footed Albatross", "Laysan Albatross"], [2, 1])
    check_split(ds.test, [101, 102], ["White Pelican", "Western Wood Pewee"], [3, 2])


@pytest.mark.parametrize("inner", [False, True], ids=["parent-root", "CUB_200_2011-root"])
def test_cub_official_ignores_classification_split(tmp_path, inner):
    base = make_cub(tmp_path)
    ds = cub200.build_cub200(base if inner else tmp_path, check_counts=False)
    assert ds.info["layout"] == "official" and ds.info["root"] == str(base if inner else tmp_path)
    check_cub(ds)


@pytest.mark.parametrize("where", ["parent", "CUB_200_2011", "images"])
def test_cub_folders(tmp_path, where):
    base = make_cub(tmp_path, annotations=False)
    root = {"parent": tmp_path, "CUB_200_2011": base, "images": base / "images"}[where]
    ds = cub200.build_cub200(root, check_counts=False)
    assert ds.info["layout"] == "folders"
    check_cub(ds)


def test_cub_text_is_after_last_dot():
    assert cub200.class_text("001.Black_footed_Albatross") == "Black footed Albatross"
    assert cub200.class_text("200.Common_Yellowthroat") == "Common Yellowthroat"


def test_cub_counts_are_checked(tmp_path):
    make_cub(tmp_path)
    with pytest.raises(
        DatasetError, match=r"images: expected 11788, found 8.*train_images: expected 5864, found 3"
    ):
        cub200.build_cub200(tmp_path)


def test_cub_missing_image_is_reported_without_count_check(tmp_path):
    base = make_cub(tmp_path)
    gone = base / "images" / "101.White_Pelican" / "img_1.jpg"
    gone.unlink()
    with pytest.raises(DatasetError, match=r"1 of 8 images .*images\.txt.* missing") as err:
        cub200.build_cub200(tmp_path, check_counts=False)
    assert str(gone) in str(err.value)


def test_cub_missing_root_and_files(tmp_path):
    with pytest.raises(DatasetError, match="not a directory") as err:
        cub200.build_cub200(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)
    make_cub(tmp_path, annotations=False)
    with pytest.raises(DatasetError, match=r"images\.txt.* is missing"):
        cub200.build_cub200(tmp_path, layout="official", check_counts=False)


@pytest.mark.parametrize(
    "builder", [cub200.build_cub200, cars196.build_cars196, sop.build_sop, folder.build_folder]
)
def test_unknown_layout_is_rejected(tmp_path, builder):
    with pytest.raises(DatasetError, match="unknown layout 'oficial'.*expected one of"):
        builder(tmp_path, layout="oficial")


# --- CARS196 ---

# Official order differs from alphabetical: alphabetically, the two test classes would come first.
CARS_NAMES = ["Zonda Roadster 2001", "Yaris Hatchback 2002"] + [f"Filler Car {k:03d}" for k in range(3, 99)]
CARS_NAMES += ["Audi A4 Sedan 2003", "Ram C/V Cargo Van Minivan 2012"]  # ids 99 and 100
CARS_PER_CLASS = {1: 2, 2: 1, 99: 1, 100: 3}


def save_cars_mat(path: Path, rows: list[tuple[str, int]]) -> None:
    paper_world.save_cars_mat(path, rows, CARS_NAMES)


def make_cars_official(root: Path) -> list[tuple[str, int]]:
    rows, n = [], 0
    for cid, count in CARS_PER_CLASS.items():
        for _ in range(count):
            n += 1
            rows.append((f"car_ims/{n:06d}.jpg", cid))
    write_images(root / "car_ims", [Path(rel).name for rel, _ in rows])
    save_cars_mat(root / "cars_annos.mat", rows)
    return rows


def make_cars_folders(root: Path, order: str | None) -> None:
    for cid, count in CARS_PER_CLASS.items():
        write_images(root / CARS_NAMES[cid - 1].replace("/", "-"), [f"{k:05d}.jpg" for k in range(count)])
    if order == "txt":
        (root / "class_names.txt").write_text("\n".join(CARS_NAMES) + "\n")
    elif order == "mat":
        save_cars_mat(root / "cars_annos.mat", [("car_ims/000001.jpg", 1)])  # no car_ims/: still folders


def check_cars(ds) -> None:
    """The trap: train = official ids 1 and 2 (Zonda, Yaris), not the alphabetically first folders."""
    assert ds.name == "cars196"
    check_split(ds.train, [1, 2], ["Zonda Roadster 2001", "Yaris Hatchback 2002"], [2, 1])
    check_split(ds.test, [99, 100], ["Audi A4 Sedan 2003", "Ram C/V Cargo Van Minivan 2012"], [1, 3])


def test_cars_official(tmp_path):
    make_cars_official(tmp_path)
    ds = cars196.build_cars196(tmp_path, check_counts=False)
    assert ds.info["layout"] == "official"
    check_cars(ds)


@pytest.mark.parametrize("order", ["txt", "mat"])
def test_cars_folders_split_by_official_order(tmp_path, order):
    make_cars_folders(tmp_path, order)
    assert sorted(os.listdir(tmp_path))[0] == "Audi A4 Sedan 2003"  # the trap is armed
    ds = cars196.build_cars196(tmp_path, check_counts=False)
    assert ds.info["layout"] == "folders"
    check_cars(ds)


def test_cars_folders_without_order_refuse_alphabetical(tmp_path):
    make_cars_folders(tmp_path, None)
    with pytest.raises(DatasetError, match=r"alphabetically.*class_names\.txt"):
        cars196.build_cars196(tmp_path, check_counts=False)


def test_cars_unknown_folder(tmp_path):
    make_cars_folders(tmp_path, "txt")
    write_images(tmp_path / "train", ["x.jpg"])
    with pytest.raises(DatasetError, match="not an official class name"):
        cars196.build_cars196(tmp_path, check_counts=False)


def test_cars_counts_and_missing_image(tmp_path):
    rows = make_cars_official(tmp_path)
    with pytest.raises(
        DatasetError, match=r"images: expected 16185, found 7.*train_classes: expected 98, found 2"
    ):
        cars196.build_cars196(tmp_path)
    (tmp_path / rows[-1][0]).unlink()
    with pytest.raises(DatasetError, match=r"1 of 7 images .*cars_annos\.mat.* missing .*000007\.jpg"):
        cars196.build_cars196(tmp_path, check_counts=False)


def test_cars_missing_root_and_mat(tmp_path):
    with pytest.raises(DatasetError, match="not a directory") as err:
        cars196.build_cars196(tmp_path / "cars")
    assert str(tmp_path / "cars") in str(err.value)
    with pytest.raises(DatasetError, match=r"cars_annos\.mat.* is missing"):
        cars196.build_cars196(tmp_path, layout="official")


# --- the release's split (data.split=release) ---


def release_train_ids(names: list[str]) -> set[int]:
    """The release, restated: class names sorted with Python's sorted(), the first 98 are train."""
    return {names.index(name) + 1 for name in sorted(names)[:98]}


@pytest.mark.parametrize("layout", ["official", "folders"])
def test_cars_release_split_is_the_first_98_sorted_names(tmp_path, layout):
    if layout == "official":
        make_cars_official(tmp_path)
    else:
        make_cars_folders(tmp_path, "txt")
    official = cars196.build_cars196(tmp_path, check_counts=False)
    release = cars196.build_cars196(tmp_path, check_counts=False, split="release")
    assert (official.info["split"], release.info["split"]) == ("official", "release")
    # Predicted: "Audi ..." (id 99) and "Ram ..." (id 100) sort among the first 98 names, "Yaris" and "Zonda"
    # (ids 2 and 1) last: exactly the four classes with images swap sides.
    predicted = release_train_ids(CARS_NAMES)
    assert {99, 100} <= predicted and not {1, 2} & predicted
    assert cars196.train_class_ids(CARS_NAMES, "release") == predicted
    check_cars(official)
    check_split(release.train, [99, 100], ["Audi A4 Sedan 2003", "Ram C/V Cargo Van Minivan 2012"], [1, 3])
    check_split(release.test, [1, 2], ["Zonda Roadster 2001", "Yaris Hatchback 2002"], [2, 1])
    assert sorted(release.train.paths + release.test.paths) == sorted(
        official.train.paths + official.test.paths
    )


def test_cub_and_sop_release_split_equals_official(tmp_path):
    make_cub(tmp_path / "cub")
    make_sop(tmp_path / "sop")
    for build, root in ((cub200.build_cub200, tmp_path / "cub"), (sop.build_sop, tmp_path / "sop")):
        official = build(root, check_counts=False)
        release = build(root, check_counts=False, split="release")
        for a, b in ((official.train, release.train), (official.test, release.test)):
            assert (a.class_ids, a.paths, a.labels.tolist()) == (b.class_ids, b.paths, b.labels.tolist())


def test_unknown_or_unavailable_split_is_refused(tmp_path):
    make_cars_official(tmp_path)
    with pytest.raises(
        DatasetError, match=r"data.split='relase' is not available \(did you mean 'release'\?\)"
    ):
        cars196.build_cars196(tmp_path, check_counts=False, split="relase")
    make_folder(tmp_path / "own")
    with pytest.raises(DatasetError, match=r"folder: data.split='release' is not available.*cub200, cars196"):
        folder.build_folder(tmp_path / "own", split="release")
    with pytest.raises(DatasetError, match=r"demo: data.split='release' is not available"):
        DATASETS.create("demo", "", split="release")


def test_real_cars_class_names_and_how_many_classes_the_release_split_moves():
    """The packaged official names (provenance in the file's header): how many classes are train in one
    split and test in the other. Printed (pytest -s) and recorded in the cars196 module docstring."""
    names = cars196.packaged_class_names()
    assert len(names) == len(set(names)) == 196
    assert names[0] == "AM General Hummer SUV 2000" and names[1] == "Acura RL Sedan 2012"
    assert names[97] == "Eagle Talon Hatchback 1998" and names[98] == "FIAT 500 Abarth 2012"  # ids 98, 99
    assert names[-1] == "smart fortwo Convertible 2012"
    assert sorted(names)[:2] == ["AM General Hummer SUV 2000", "Acura Integra Type R 2001"]  # byte order
    assert sorted(names) != names  # the official order is not alphabetical

    official = set(range(1, 99))
    release = release_train_ids(names)
    assert cars196.train_class_ids(names, "official") == official
    assert cars196.train_class_ids(names, "release") == release
    moved = official ^ release  # train in one split, test in the other
    print(f"\nCARS196: the release split and the official split disagree on {len(moved)} classes")
    assert len(release) == 98 and 0 <= len(moved) <= 196 and len(moved) % 2 == 0  # sanity only
    # Folder names cannot hold '/': mirrors write '-' (or ':') for "Ram C/V ...", which sorts the same.
    for sep in "-:":
        assert release_train_ids([n.replace("/", sep) for n in names]) == release
    # the number recorded in the docstring is the one computed here
    assert f"disagree on {len(moved)} classes" in " ".join(cars196.__doc__.split())


# --- Stanford Online Products ---

SOP_TRAIN = [
    (1, 1, "bicycle_final/111_0.JPG"),
    (1, 1, "bicycle_final/111_1.JPG"),
    (2, 2, "coffee_maker_final/222_0.JPG"),
]
SOP_TEST = [
    (11320, 2, "coffee_maker_final/333_1.JPG"),
    (11320, 2, "coffee_maker_final/333_0.JPG"),
    (11319, 1, "bicycle_final/444_0.JPG"),
]


def make_sop(root: Path) -> Path:
    base = root / "Stanford_Online_Products"
    for filename, rows in [("Ebay_train.txt", SOP_TRAIN), ("Ebay_test.txt", SOP_TEST)]:
        lines = ["image_id class_id super_class_id path"]
        lines += [f"{i} {cid} {sid} {rel}" for i, (cid, sid, rel) in enumerate(rows, 1)]
        (base / filename).parent.mkdir(parents=True, exist_ok=True)
        (base / filename).write_text("\n".join(lines) + "\n")
        for _, _, rel in rows:
            write_images((base / rel).parent, [Path(rel).name])
    return base


@pytest.mark.parametrize("inner", [False, True])
def test_sop_official(tmp_path, inner):
    base = make_sop(tmp_path)
    ds = sop.build_sop(base if inner else tmp_path, check_counts=False)
    assert ds.name == "sop"
    check_split(ds.train, [1, 2], ["bicycle", "coffee maker"], [2, 1])
    check_split(ds.test, [11319, 11320], ["bicycle", "coffee maker"], [1, 2])
    assert ds.test.paths[1].endswith("333_0.JPG")
    assert ds.info["super_class_of_train"] == [1, 2] and ds.info["super_class_of_test"] == [1, 2]


def test_sop_counts_missing_image_and_missing_file(tmp_path):
    base = make_sop(tmp_path)
    with pytest.raises(DatasetError, match=r"train_classes: expected 11318, found 2"):
        sop.build_sop(tmp_path)
    (base / "bicycle_final" / "444_0.JPG").unlink()
    with pytest.raises(DatasetError, match=r"1 of 3 images .*Ebay_test\.txt.*444_0\.JPG"):
        sop.build_sop(tmp_path, check_counts=False)
    (base / "Ebay_test.txt").unlink()
    with pytest.raises(DatasetError, match=r"Ebay_test\.txt.* is missing"):
        sop.build_sop(tmp_path, check_counts=False)
    with pytest.raises(DatasetError, match="not a directory") as err:
        sop.build_sop(tmp_path / "sop")
    assert str(tmp_path / "sop") in str(err.value)


def test_sop_class_text():
    assert sop.class_text("coffee_maker_final") == "coffee maker"
    assert sop.class_text("bicycle_final") == "bicycle"


# --- generic class folders ---


def make_folder(root: Path) -> None:
    write_images(root / "train" / "red_fox", ["b.jpg", "a.png"])
    write_images(root / "train" / "arctic_wolf", ["x.JPEG"])
    write_images(root / "test" / "snow_owl", ["1.webp", "2.bmp", "3.jpg"])
    (root / "train" / "red_fox" / "notes.txt").write_text("not an image")
    (root / "train" / "README.md").write_text("not a class")


def test_folder_dataset(tmp_path):
    make_folder(tmp_path)
    ds = folder.build_folder(tmp_path)  # check_counts=True: nothing to check for user data
    assert ds.name == "folder" and ds.info["layout"] == "folders"
    assert ds.train.class_texts == ["arctic wolf", "red fox"] and ds.train.class_ids == [1, 2]
    assert ds.train.labels.tolist() == [0, 1, 1]
    assert [Path(p).name for p in ds.train.paths] == ["x.JPEG", "a.png", "b.jpg"]
    assert ds.test.class_texts == ["snow owl"] and ds.test.class_ids == [3] and len(ds.test) == 3


def test_folder_requires_disjoint_classes_and_both_splits(tmp_path):
    make_folder(tmp_path)
    write_images(tmp_path / "test" / "red_fox", ["c.jpg"])
    with pytest.raises(DatasetError, match="'red_fox'.*disjoint"):
        folder.build_folder(tmp_path)
    only_train = tmp_path / "only_train"
    write_images(only_train / "train" / "cat", ["c.jpg"])
    with pytest.raises(DatasetError, match=r"only_train/test' is not a directory"):
        folder.build_folder(only_train)


def test_no_root_anywhere_names_both_ways_to_give_one(monkeypatch):
    from langdml_core.data import check_command

    monkeypatch.delenv("LANGDML_DATA_ROOT", raising=False)
    with pytest.raises(DatasetError) as raised:
        check_command("cub200", "", "auto", True, False)
    assert str(raised.value) == (
        "cub200: no dataset root given: set data.root (--root DIR for `langdml data check`) to the dataset's "
        "folder, or LANGDML_DATA_ROOT to the folder that holds cub200/."
    )


def test_a_split_digest_names_its_content_not_its_place(tmp_path):
    import shutil

    make_folder(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    a, b = folder.build_folder(tmp_path / "a"), folder.build_folder(tmp_path / "b")
    assert a.train.digest() == b.train.digest() and a.test.digest() == b.test.digest()  # moved: the same
    assert a.train.digest() != a.test.digest()
    with open(tmp_path / "b" / "train" / "red_fox" / "a.png", "ab") as f:
        f.write(b"\0")  # a changed file (its size) changes the digest
    assert folder.build_folder(tmp_path / "b").train.digest() != a.train.digest()
    relabelled = folder.build_folder(tmp_path / "a").train
    relabelled.labels = relabelled.labels[::-1].copy()
    assert relabelled.digest() != a.train.digest()
    import numpy as np

    from langdml_core.data.base import ImageSet

    pixels = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    generated = ImageSet("train", np.array([0, 1]), ["x", "y"], [1, 2], images=pixels)
    brighter = ImageSet("train", np.array([0, 1]), ["x", "y"], [1, 2], images=pixels + 1)
    assert generated.digest() != brighter.digest()
