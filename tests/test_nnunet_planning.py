"""Adding paper and tiny configurations to nnUNetPlans.json."""
import json

import pytest

from nnunet_anomaly.nnunet.planning import PRESETS, add_configuration, add_preset, main


def _plans(tmp_path):
    arch = lambda dim: {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                        "arch_kwargs": {"n_stages": 4, "features_per_stage": [32, 64, 128, 256],
                                        "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
                                        "kernel_sizes": [[3] * dim] * 4, "strides": [[1] * dim] + [[2] * dim] * 3,
                                        "n_conv_per_stage": [2] * 4, "n_conv_per_stage_decoder": [2] * 3,
                                        "conv_bias": True,
                                        "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
                                        "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None,
                                        "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                                        "nonlin_kwargs": {"inplace": True}},
                        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}
    plans = {"dataset_name": "Dataset999_Toy", "plans_name": "nnUNetPlans", "configurations": {
        "2d": {"data_identifier": "nnUNetPlans_2d", "patch_size": [64, 64], "batch_size": 12, "spacing": [2.0, 2.0],
               "architecture": arch(2)},
        "3d_fullres": {"data_identifier": "nnUNetPlans_3d_fullres", "patch_size": [64, 64, 64], "batch_size": 2,
                       "spacing": [2.0, 2.0, 2.0], "architecture": arch(3)}}}
    path = tmp_path / "nnUNetPlans.json"
    path.write_text(json.dumps(plans))
    return path


def test_paper_configurations_have_the_paper_depth(tmp_path):
    path = _plans(tmp_path)
    brain = add_preset(path, "3d_paper")
    cxr = add_preset(path, "2d_paper")
    assert brain["patch_size"] == [80, 112, 80] and brain["batch_size"] == 8
    assert brain["architecture"]["arch_kwargs"]["n_stages"] == 5
    assert brain["architecture"]["arch_kwargs"]["features_per_stage"] == [32, 64, 128, 256, 320]
    assert cxr["patch_size"] == [256, 256] and cxr["batch_size"] == 50
    assert cxr["architecture"]["arch_kwargs"]["n_stages"] == 7
    assert cxr["architecture"]["arch_kwargs"]["features_per_stage"] == [32, 64, 128, 256, 512, 512, 512]
    written = json.loads(path.read_text())["configurations"]
    assert written["3d_paper"]["inherits_from"] == "3d_fullres"
    # nnU-Net resolves it, with the parent's data identifier (no re-preprocessing)
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    config = PlansManager(json.loads(path.read_text())).get_configuration("3d_paper")
    assert config.data_identifier == "nnUNetPlans_3d_fullres" and list(config.patch_size) == [80, 112, 80]
    assert config.network_arch_init_kwargs["n_stages"] == 5


def test_tiny_presets(tmp_path):
    path = _plans(tmp_path)
    tiny = add_preset(path, "3d_tiny")
    assert tiny["patch_size"] == [32, 32, 32]
    kwargs = tiny["architecture"]["arch_kwargs"]
    assert kwargs["features_per_stage"][0] == 8 and set(kwargs["n_conv_per_stage"]) == {1}
    assert add_preset(path, "2d_tiny")["patch_size"] == [64, 64]
    assert set(PRESETS) == {"3d_paper", "2d_paper", "3d_tiny", "2d_tiny"}


def test_never_clobbers_without_force(tmp_path):
    path = _plans(tmp_path)
    add_configuration(path, "mine", patch_size=(48, 48, 48), batch_size=2, base_configuration="3d_fullres")
    before = path.read_text()
    add_configuration(path, "mine", patch_size=(48, 48, 48), batch_size=2, base_configuration="3d_fullres")
    assert path.read_text() == before  # identical: left alone
    with pytest.raises(ValueError, match="exists and differs"):
        add_configuration(path, "mine", patch_size=(32, 32, 32), batch_size=2, base_configuration="3d_fullres")
    assert path.read_text() == before
    entry = add_configuration(path, "mine", patch_size=(32, 32, 32), batch_size=2, base_configuration="3d_fullres",
                              force=True)
    assert json.loads(path.read_text())["configurations"]["mine"] == json.loads(json.dumps(entry))


def test_clear_errors(tmp_path):
    path = _plans(tmp_path)
    with pytest.raises(ValueError, match="2 axes but '3d_fullres' is 3D"):
        add_configuration(path, "x", patch_size=(64, 64), batch_size=2, base_configuration="3d_fullres")
    with pytest.raises(ValueError, match="not in the plans"):
        add_configuration(path, "x", patch_size=(64, 64), batch_size=2, base_configuration="3d_lowres")
    with pytest.raises(FileNotFoundError, match="plan_and_preprocess"):
        add_configuration(tmp_path / "missing.json", "x", patch_size=(64, 64), batch_size=2, base_configuration="2d")
    with pytest.raises(ValueError, match="unknown preset"):
        add_preset(path, "3d_huge")


def test_command_line(tmp_path, monkeypatch, capsys):
    dataset = tmp_path / "Dataset999_Toy"
    dataset.mkdir()
    _plans(tmp_path).rename(dataset / "nnUNetPlans.json")
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    assert main(["add-config", "-d", "999", "--name", "3d_paper", "--patch", "80", "112", "80", "--batch", "8"]) == 0
    assert "5 stages" in capsys.readouterr().out
    assert main(["add-config", "-d", "999", "--name", "3d_paper", "--patch", "64", "64", "64", "--batch", "8"]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["add-preset", "-d", "999", "2d_tiny", "3d_tiny"]) == 0
    configs = json.loads((dataset / "nnUNetPlans.json").read_text())["configurations"]
    assert {"3d_paper", "2d_tiny", "3d_tiny"} <= set(configs)
