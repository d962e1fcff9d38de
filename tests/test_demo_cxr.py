"""``nnunet_anomaly demo --setting cxr``: the radiograph cache, the staging, and (slow) the real run with ``--quick``.

The tests never download: they write a stand-in radiograph cache of chest-like images they draw
themselves (:func:`_stand_in_cache`), in the layout ``make radiographs`` fills.
"""
import csv
import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from nnunet_anomaly.demo import Workspace, demo_steps
from nnunet_anomaly.demo.cxr import ASPECT, stage_radiographs
from nnunet_anomaly.demo.settings import CXR, CXR_QUICK
from nnunet_anomaly.offline_radiographs import available_radiographs, write_cached_radiographs


def _chest(rng, width, height, opacity=False) -> bytes:
    """A chest-like 8-bit JPEG: a bright body, two dark lungs, ribs; `opacity` adds a bright patch in a lung."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = width / 2, height / 2
    image = 60 + 140 * (np.abs(x - cx) < 0.42 * width)
    for side in (-1, 1):
        lung = ((x - cx - side * 0.18 * width) / (0.13 * width)) ** 2 + ((y - cy) / (0.33 * height)) ** 2 < 1
        image = np.where(lung, 70 + 25 * (np.sin(y / (0.03 * height)) > 0.6), image)
    if opacity:
        blob = ((x - cx - 0.18 * width) ** 2 + (y - cy - 0.1 * height) ** 2) < (0.08 * width) ** 2
        image = np.where(blob, 170, image)
    image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _stand_in_cache(folder, n_normal=8, n_pneumonia=2):
    rng = np.random.default_rng(0)
    images = {"normal": {f"NORMAL-{k}.jpeg": _chest(rng, 300 + 10 * k, 240) for k in range(n_normal)},
              "pneumonia": {f"person{k}_bacteria.jpeg": _chest(rng, 360, 240, opacity=True) for k in range(n_pneumonia)}}
    return write_cached_radiographs(folder, images, source={"package": "test stand-in (drawn by the test)"})


def test_missing_cache_names_the_set_up_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "nnunet_anomaly", "demo", "--setting", "cxr", "--workdir",
                             str(tmp_path / "w"), "--radiographs", str(tmp_path / "empty")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "make radiographs" in result.stderr and "offline_radiographs fetch --cache" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_stage_radiographs_splits_crops_and_labels(tmp_path):
    cache = _stand_in_cache(tmp_path / "cache")
    before = {p: p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file()}
    records = stage_radiographs(available_radiographs(cache), tmp_path / "staged", num_training=5, seed=0)
    assert {p: p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file()} == before  # sources untouched
    train = sorted(p.name for p in (tmp_path / "staged" / "train").iterdir())
    test = sorted(p.name for p in (tmp_path / "staged" / "test").iterdir())
    assert train == [f"train_healthy_{k:03d}.png" for k in range(5)]
    assert test == ["test_healthy_000.png", "test_healthy_001.png", "test_healthy_002.png",
                    "test_pneumonia_000.png", "test_pneumonia_001.png"]
    for name in train + test:
        folder = "train" if name.startswith("train") else "test"
        with Image.open(tmp_path / "staged" / folder / name) as image:
            assert image.mode == "L" and abs(image.size[0] / image.size[1] - ASPECT) < 0.01
    with open(tmp_path / "staged" / "test_labels.csv", newline="") as handle:
        labels = {row["case"]: row["label"] for row in csv.DictReader(handle)}
    assert labels == {"test_healthy_000": "0", "test_healthy_001": "0", "test_healthy_002": "0",
                      "test_pneumonia_000": "1", "test_pneumonia_001": "1"}
    # the same seed draws the same training images; no image is in both sets
    again = stage_radiographs(available_radiographs(cache), tmp_path / "again", num_training=5, seed=0)
    assert again == records
    sources = [(r["role"], r["source"]) for r in records]
    assert not {s for role, s in sources if role == "train"} & {s for role, s in sources if role == "test"}


@pytest.mark.slow
def test_quick_cxr_demo_end_to_end(tmp_path):
    """The real pipeline on the tiny setting, on a stand-in cache: every step through the real CLIs, a valid report."""
    cache = _stand_in_cache(tmp_path / "radiographs")
    workdir = tmp_path / "demo"
    argv = [sys.executable, "-m", "nnunet_anomaly", "demo", "--setting", "cxr", "--quick", "--device", "cpu",
            "--workdir", str(workdir), "--radiographs", str(cache)]
    env = dict(os.environ, MPLBACKEND="Agg")
    run = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = workdir / "report" / "report.md"
    text = report.read_text()
    for needed in ("Does it find anomalies?", "How few images this is", "What these numbers can and cannot show",
                   "Dataset505_Radiographs", "nnUNetv2_plan_and_preprocess -d 992 -c 2d", "nnUNetv2_train 992 2d_demo",
                   "nnunet_anomaly predict", "nnUNetv2_predict", "nnunet_anomaly evaluate --setting cxr",
                   "| **ensemble** |", "| fold 0 |", "| fold 1 |", "| mean of the folds |", "| intensity baseline |",
                   "mean (paper): AUROC / AP", "top_0.1%"):
        assert needed in text, f"report lacks {needed!r}"
    assert str(tmp_path) not in text, "the report must not contain machine paths"
    figures = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", text)
    assert {"figures/demo_case_scores.png", "figures/demo_overlays_radiographs.png",
            "figures/demo_overlays_synthetic.png", "figures/demo_validation.png", "figures/demo_tasks_2d.png"} <= set(figures)
    for figure in figures:
        with Image.open(report.parent / figure) as image:
            assert image.format == "PNG" and min(image.size) > 100
            assert np.asarray(image.convert("L")).std() > 5, f"{figure} is blank"
    quality = json.loads((report.parent / "quality.json").read_text())
    assert quality["cases"] == {"healthy": 3, "pneumonia": 2, "synthetic": 5, "training": 5}
    for row in quality["sample"].values():
        assert 0 <= row["auroc"]["mean"] <= 1 and 0 <= row["ap"]["mean"] <= 1
    assert 0 <= quality["synthetic"]["ensemble"]["pooled"] <= 1
    # a second run reuses every step
    again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    steps = demo_steps(Workspace(workdir, CXR_QUICK))
    assert again.stdout.count("done earlier, reused") + again.stderr.count("done earlier, reused") == len(steps)


def test_cxr_settings_train_on_healthy_images_only():
    assert CXR.setting == CXR_QUICK.setting == "cxr" and CXR.dataset_name == "Dataset992_CXRDemo"
    assert CXR.num_training == 5 and len(CXR.folds) == 5 and CXR.base_configuration == "2d"
