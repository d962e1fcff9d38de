"""Adding paper and tiny configurations to nnUNetPlans.json."""
import json

import pytest

from nnunet_anomaly.nnunet.planning import PRESETS, add_configuration, add_preset, main


RESENC = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
PLAIN = "dynamic_network_architectures.architectures.unet.PlainConvUNet"


def _plans(tmp_path, network=PLAIN):
    # the depth keys as nnU-Net's planners write them (default planner / nnUNetPlannerResEncM-L-XL)
    depth = {"n_blocks_per_stage": [1, 3, 4, 6], "n_conv_per_stage_decoder": [1] * 3} if network == RESENC else \
        {"n_conv_per_stage": [2] * 4, "n_conv_per_stage_decoder": [2] * 3}
    arch = lambda dim: {"network_class_name": network,
                        "arch_kwargs": {"n_stages": 4, "features_per_stage": [32, 64, 128, 256],
                                        "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
                                        "kernel_sizes": [[3] * dim] * 4, "strides": [[1] * dim] + [[2] * dim] * 3,
                                        **depth,
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


def _build(path, name):
    """The network nnU-Net builds for configuration `name` of the written plans (as the trainer and predictor do)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_anomaly.trainers import AnomalyTaskTrainer
    config = PlansManager(json.loads(path.read_text())).get_configuration(name)
    network = AnomalyTaskTrainer.build_network_architecture(None, config, 1, 1, enable_deep_supervision=True)
    return network, config


@pytest.mark.parametrize("network_class", [PLAIN, RESENC], ids=["PlainConvUNet", "ResidualEncoderUNet"])
def test_configurations_build_for_both_network_classes(tmp_path, network_class):
    """nnU-Net recommends its ResEnc presets; their encoder takes n_blocks_per_stage, not n_conv_per_stage."""
    import torch

    path = _plans(tmp_path, network_class)
    for preset in ("3d_tiny", "2d_tiny", "3d_paper"):
        add_preset(path, preset)
        network, config = _build(path, preset)
        assert type(network).__name__ == network_class.rsplit(".", 1)[-1]
        n = config.network_arch_init_kwargs["n_stages"]
        if preset.endswith("tiny"):
            with torch.no_grad():
                out = network(torch.zeros(1, 1, *config.patch_size))
            assert tuple(out[0].shape) == (1, 1, *config.patch_size)  # full-resolution deep-supervision head
            assert len(network.encoder.stages) == n
    kwargs = json.loads(path.read_text())["configurations"]["3d_paper"]["architecture"]["arch_kwargs"]
    if network_class == RESENC:
        assert "n_conv_per_stage" not in kwargs
        assert kwargs["n_blocks_per_stage"] == [1, 3, 4, 6, 6]  # the ResEnc pattern, continued to 5 stages
        assert kwargs["n_conv_per_stage_decoder"] == [1] * 4
    else:
        assert kwargs["n_conv_per_stage"] == [2] * 5 and "n_blocks_per_stage" not in kwargs


def test_positional_encoding_variant_builds_from_resenc_plans(tmp_path):
    import torch

    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_anomaly.trainers import AnomalyTaskTrainer_PosEnc
    path = _plans(tmp_path, RESENC)
    add_preset(path, "2d_tiny")
    config = PlansManager(json.loads(path.read_text())).get_configuration("2d_tiny")
    network = AnomalyTaskTrainer_PosEnc.build_network_architecture(None, config, 1, 1, enable_deep_supervision=False)
    with torch.no_grad():
        assert tuple(network(torch.zeros(1, 1, 64, 64)).shape) == (1, 1, 64, 64)


def test_an_unknown_network_class_is_refused(tmp_path):
    path = _plans(tmp_path, "my_lab.networks.FancyUNet")
    with pytest.raises(ValueError, match="FancyUNet.*PlainConvUNet and ResidualEncoderUNet"):
        add_preset(path, "3d_tiny")
