"""A miniature of the world the paper sweeps expect, for their smoke runs on a laptop.

``build(root)`` writes CUB200-2011, CARS196 and Stanford Online Products fixture trees in their OFFICIAL
layouts (so the real loaders parse them) and a Hugging Face cache holding, under the real repository ids,
tiny or randomly initialised versions of every model the sweeps name: the timm backbones and the PLG
classifier, the OpenAI CLIP text towers (open_clip Hub layout) and the transformers text models. It returns
the environment a sweep needs to find them; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tiny_models
from PIL import Image

CLASSES = 10
"""Classes per split: a smoke batch of 16 holds 8 classes x 2 samples; a search holds 2 out for validation."""
PER_CLASS = 3
TIMM_MODELS = ["resnet50.tv_in1k", "vit_small_patch16_224.augreg_in21k_ft_in1k"]
HF_TEXT_MODELS = {"bert-base-uncased": tiny_models.save_bert, "roberta-large": tiny_models.save_roberta}


def write_jpeg(path: Path, seed: int) -> None:
    """A small non-square JPEG whose colour depends on ``seed`` (classes differ, images within one vary)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG")


def make_cub(root: Path) -> None:
    """CUB_200_2011/{images.txt, image_class_labels.txt, classes.txt, images/NNN.Name/*.jpg}."""
    base = root / "CUB_200_2011"
    class_ids = [*range(1, CLASSES + 1), *range(101, 101 + CLASSES)]
    rows = []
    for cid in class_ids:
        folder = f"{cid:03d}.Bird_Species_{cid}"
        for k in range(PER_CLASS):
            rel = f"{folder}/{folder}_{k:04d}.jpg"
            write_jpeg(base / "images" / rel, seed=cid * 100 + k)
            rows.append((rel, cid))
    (base / "images.txt").write_text("".join(f"{i} {rel}\n" for i, (rel, _) in enumerate(rows, 1)))
    (base / "image_class_labels.txt").write_text("".join(f"{i} {c}\n" for i, (_, c) in enumerate(rows, 1)))
    (base / "classes.txt").write_text("".join(f"{c} {c:03d}.Bird_Species_{c}\n" for c in class_ids))


def save_cars_mat(path: Path, rows: list[tuple[str, int]], class_names: list[str]) -> None:
    """A cars_annos.mat shaped like the real one: 1xN struct array and a 1xC cell array of names."""
    import scipy.io

    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    annotations = np.zeros((1, len(rows)), dtype=[(f, "O") for f in fields])
    for i, (rel, cid) in enumerate(rows):
        # the per-image test flag is the classification split: loaders must ignore it
        annotations[0, i] = (
            rel,
            np.uint8(1),
            np.uint8(1),
            np.uint8(7),
            np.uint8(7),
            np.uint8(cid),
            np.uint8(i % 2),
        )
    names = np.empty((1, len(class_names)), dtype=object)
    names[0, :] = class_names
    scipy.io.savemat(str(path), {"annotations": annotations, "class_names": names})


def make_cars(root: Path) -> None:
    """car_ims/NNNNNN.jpg + cars_annos.mat (196 official names; classes 1-8 train, 99-106 test)."""
    names = [f"Make{k} Model{k} Sedan {2000 + k % 13}" for k in range(1, 197)]
    rows = []
    for cid in [*range(1, CLASSES + 1), *range(99, 99 + CLASSES)]:
        for k in range(PER_CLASS):
            rel = f"car_ims/{len(rows) + 1:06d}.jpg"
            write_jpeg(root / rel, seed=cid * 100 + k)
            rows.append((rel, cid))
    save_cars_mat(root / "cars_annos.mat", rows, names)


def make_sop(root: Path) -> None:
    """Stanford_Online_Products/{Ebay_train.txt, Ebay_test.txt, <super>_final/*.JPG}."""
    base = root / "Stanford_Online_Products"
    supers = ["bicycle", "chair", "coffee_maker", "kettle"]
    for filename, first_id in (("Ebay_train.txt", 1), ("Ebay_test.txt", 11319)):
        lines = ["image_id class_id super_class_id path"]
        for c in range(CLASSES):
            cid, sid = first_id + c, c % len(supers) + 1
            for k in range(PER_CLASS):
                rel = f"{supers[sid - 1]}_final/{cid}_{k}.JPG"
                write_jpeg(base / rel, seed=cid * 100 + k)
                lines.append(f"{len(lines)} {cid} {sid} {rel}")
        (base / filename).write_text("\n".join(lines) + "\n")


def populate_hub(cache: Path) -> None:
    """Every model the paper sweeps name, under its real repository id, in a Hugging Face cache."""
    from open_clip.pretrained import get_pretrained_cfg

    from langdml_core.language.encoders import CLIP_ARCHS

    for name in TIMM_MODELS:  # timm's pretrained_cfg points at timm/<name> (model.safetensors)
        tiny_models.save_timm_random(
            name, tiny_models.hub_snapshot(cache, f"timm/{name}") / "model.safetensors"
        )
    for spec in CLIP_ARCHS.values():
        repo_id = get_pretrained_cfg(spec.arch, spec.tag)["hf_hub"].rstrip("/")
        tiny_models.save_clip_dir(tiny_models.hub_snapshot(cache, repo_id))
    for repo_id, save in HF_TEXT_MODELS.items():
        save(tiny_models.hub_snapshot(cache, repo_id))


def build(root: Path) -> dict[str, str]:
    """Write the fixture world under ``root``; return the environment variables that point at it."""
    data = root / "data"
    make_cub(data / "cub200")
    make_cars(data / "cars196")
    make_sop(data / "sop")
    populate_hub(root / "hub")
    return {"LANGDML_DATA_ROOT": str(data), "HF_HUB_CACHE": str(root / "hub"), "HF_HUB_OFFLINE": "1"}
