"""External pools: MOOD-like abdominal CT volumes and a folder of natural images (PNG/JPEG)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from nnunet_anomaly import conversion
from nnunet_anomaly.dataset_conversion import DatasetPool_ImageNet as imagenet
from nnunet_anomaly.dataset_conversion import DatasetPool_MOODAbdomen as mood


def _hashes(root: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def _mood_volume(path: Path, rng, size=64):
    """Background noise in [0, 0.02]; a body cylinder (0.2-0.8) with an enclosed gas pocket (0.01)."""
    z, y, x = np.indices((size, size, size), dtype=float)
    body = ((y - size / 2) ** 2 + (x - size / 2) ** 2 <= (0.35 * size) ** 2) & (z > 4) & (z < size - 5)
    volume = rng.uniform(0.0, 0.02, (size,) * 3)
    volume[body] = 0.5 + 0.3 * np.sin(x[body] / 5) * np.cos(y[body] / 7)
    gas = ((z - size / 2) ** 2 + (y - size / 2) ** 2 + (x - size / 2) ** 2) <= (0.1 * size) ** 2
    volume[gas] = 0.01
    image = sitk.GetImageFromArray(volume.astype(np.float32))
    image.SetSpacing((0.8, 0.8, 0.8))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return body


def test_body_mask_from_corner_keeps_enclosed_dark_regions():
    image = np.zeros((6, 6, 6))
    image[1:5, 1:5, 1:5] = 0.5
    image[2:4, 2:4, 2:4] = 0.0  # gas inside the body: not connected to the corner
    mask = conversion.body_mask_from_corner(image, upper=0.03)
    assert mask.sum() == 64 and mask[2, 2, 2]


def test_mood_pool_geometry_mask_and_zscore(tmp_path):
    rng = np.random.default_rng(0)
    source = tmp_path / "abdom_train"
    body = _mood_volume(source / "00000.nii.gz", rng)
    _mood_volume(source / "00001.nii.gz", rng)
    before = _hashes(source)
    summary, pool = mood.convert(source, tmp_path / "pool", size=32)
    assert summary.ok and summary.converted == ["00000", "00001"] and _hashes(source) == before

    image = sitk.ReadImage(str(pool / "images" / "00000.nii.gz"))
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(pool / "masks" / "00000.nii.gz"))).astype(bool)
    array = sitk.GetArrayFromImage(image)
    assert array.shape == (32, 32, 32) and np.allclose(image.GetSpacing(), 1.6)
    # the mask is the body at half resolution, gas pocket included (enclosed, so not background)
    truth = body[::2, ::2, ::2]
    assert (mask != truth).mean() < 0.03
    assert mask[16, 16, 16]
    assert abs(array[mask].mean()) < 1e-4 and abs(array[mask].std() - 1) < 1e-3 and np.all(array[~mask] == 0)

    # FolderPool reads the pool back with matching masks
    from nnunet_anomaly.pools import FolderPool

    pooled, pooled_mask = FolderPool(pool).sample(np.random.default_rng(0))
    assert pooled.shape == (1, 32, 32, 32) and pooled_mask.shape == (32, 32, 32)

    again, _ = mood.convert(source, tmp_path / "pool", size=32)
    assert again.skipped == ["00000", "00001"] and again.converted == []


def test_mood_pool_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mood.find_volumes(tmp_path / "nope")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "bad.nii.gz").write_bytes(b"junk")
    summary, _ = mood.convert(tmp_path / "src", tmp_path / "pool", size=8)
    assert "bad.nii.gz" in summary.failed["bad"]


def _natural_images(folder: Path, rng):
    (folder / "n01440764").mkdir(parents=True)
    (folder / "n01443537").mkdir(parents=True)
    ramp = np.linspace(0, 255, 300)[None, :] * np.ones((200, 1))
    rgb = np.stack([ramp, ramp[::-1], rng.uniform(0, 255, (200, 300))], -1).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "n01440764" / "n01440764_10026.JPEG")
    Image.fromarray((ramp ** 2 / 255).astype(np.uint8)).save(folder / "n01440764" / "n01440764_2.png")
    Image.fromarray(rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)).save(folder / "n01443537" / "x.jpg")
    Image.fromarray(rng.integers(0, 255, (64, 64, 4), dtype=np.uint8), mode="RGBA").save(folder / "rgba.png")
    (folder / "notes.txt").write_text("not an image")


def test_image_pool_is_the_references_preprocessing_and_selection(tmp_path):
    rng = np.random.default_rng(0)
    source = tmp_path / "imagenet" / "train"
    _natural_images(source, rng)
    before = _hashes(source)
    summary, pool = imagenet.convert(source, tmp_path / "pool", size=64)
    # ImageFolder order: class folders, files sorted; rgba.png and notes.txt lie outside any class folder
    assert summary.converted == ["n01440764_10026", "n01440764_2", "x"] and _hashes(source) == before
    out = np.load(pool / "images" / "n01440764_10026.npy")
    assert out.shape == (64, 64) and out.dtype == np.float32 and out.min() >= -1 and out.max() <= 1
    assert len(np.unique(out)) > 1000  # not quantised to 8 bits
    # equalised: each quarter of [-1, 1] holds about a quarter of the pixels
    counts = np.histogram(out, bins=4, range=(-1, 1))[0] / out.size
    assert np.all(np.abs(counts - 0.25) < 0.08), counts

    from nnunet_anomaly.pools import FolderPool

    image, mask = FolderPool(pool).sample(np.random.default_rng(0))
    assert image.shape == (1, 64, 64) and mask is None
    assert any(np.array_equal(image[0], np.load(f)) for f in (pool / "images").iterdir())  # used as stored

    # the reference's selection: np.random.seed(s); np.random.choice(n, min(k, n), replace=False)
    listing = imagenet.find_images(source)
    np.random.seed(7)
    expected = [listing[i] for i in np.random.choice(len(listing), 2, replace=False)]
    assert imagenet.choose_images(listing, 2, seed=7) == expected
    summary, pool2 = imagenet.convert(source, tmp_path / "pool2", num_images=2, seed=7, size=32)
    assert sorted(p.stem for p in (pool2 / "images").iterdir()) == sorted(p.stem for p in expected)


def test_image_preprocessing_equals_the_references_torchvision_pipeline():
    transforms = pytest.importorskip("torchvision.transforms")
    from skimage import exposure, transform

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (180, 250, 3), dtype=np.uint8)
    rgb[:, :120] //= 3  # not already uniform
    pipeline = transforms.Compose([transforms.ToTensor(), transforms.Grayscale(num_output_channels=1),
                                   transforms.Resize((512, 512), antialias=True)])
    reference = exposure.equalize_hist(pipeline(Image.fromarray(rgb)).numpy().squeeze(), nbins=256) * 2 - 1
    reference = transform.resize(reference, (256, 256), anti_aliasing=True, preserve_range=True)
    ours = conversion.natural_image_to_unit_range(rgb)
    assert np.abs(ours - reference).max() < 1e-6


def test_image_pool_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        imagenet.find_images(tmp_path / "empty")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    Image.fromarray(np.full((10, 10), 7, np.uint8)).save(tmp_path / "src" / "flat.png")
    summary, _ = imagenet.convert(tmp_path / "src", tmp_path / "pool", size=16)
    assert "broken.jpg" in summary.failed["broken"] and "constant" in summary.failed["flat"]
    assert not (tmp_path / "pool" / "images" / "broken.npy").exists()
    assert imagenet.main(["-i", str(tmp_path / "missing"), "-o", str(tmp_path / "x")]) == 1
