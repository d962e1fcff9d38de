"""The external-pool rule and the preprocessed-case pool's slicing."""
import numpy as np
import pytest

from nnunet_anomaly.nnunet.sources import POOL_ENV_VAR, case_view, resolve_external_pool


def _folder_pool(folder):
    (folder / "images").mkdir(parents=True)
    np.save(folder / "images" / "a.npy", np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32))
    return folder


def test_environment_variable_wins(tmp_path):
    pool = _folder_pool(tmp_path / "env_pool")
    _folder_pool(tmp_path / "Dataset1_X" / "anomaly_pool")
    choice = resolve_external_pool(tmp_path / "Dataset1_X", 2, environ={POOL_ENV_VAR: str(pool)})
    assert choice.pool is not None and "env_pool" in choice.description


def test_dataset_folder_pool(tmp_path):
    _folder_pool(tmp_path / "Dataset1_X" / "anomaly_pool")
    choice = resolve_external_pool(tmp_path / "Dataset1_X", 3, environ={})
    assert choice.pool is not None and "anomaly_pool" in choice.description


def test_fallbacks_are_announced(tmp_path):
    two_d = resolve_external_pool(tmp_path, 2, environ={}, num_channels=2)
    assert "natural images" in two_d.description
    image, _ = two_d.pool.sample(np.random.default_rng(0))
    assert image.shape[0] == 2 and image.dtype == np.float32
    three_d = resolve_external_pool(tmp_path, 3, environ={})
    assert three_d.pool is None and "DROPPED" in three_d.description


def test_misconfigured_pool_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=POOL_ENV_VAR):
        resolve_external_pool(tmp_path, 2, environ={POOL_ENV_VAR: str(tmp_path / "nowhere")})
    (tmp_path / "anomaly_pool").mkdir()
    with pytest.raises(FileNotFoundError, match="images"):
        resolve_external_pool(tmp_path, 2, environ={})


def test_case_view_slices_for_2d_configurations():
    data = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    seg = np.zeros((1, 3, 4, 4), np.int8)
    seg[0, 1, :2] = 1
    image, fg = case_view(data, seg, 2)
    np.testing.assert_array_equal(image, data[:, 1])
    assert fg.sum() == 8
    image3, fg3 = case_view(data, seg, 3)
    assert image3.shape == data.shape[:] and fg3.shape == (3, 4, 4)
    picked, _ = case_view(data, seg, 2, np.random.default_rng(0))
    np.testing.assert_array_equal(picked, data[:, 1])  # the only slice with foreground
    with pytest.raises(ValueError):
        case_view(data[:, 0, 0], seg[:, 0, 0], 3)
