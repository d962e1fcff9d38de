"""Positional-encoding channels inside the network."""
import numpy as np
import pytest
import torch

from nnunet_anomaly.nnunet.positional_encoding import (PositionalEncodingNetwork, build_positional_encoding_network,
                                                       num_encoding_channels, positional_encoding)


def test_shapes_and_reference_channel_counts():
    # the reference: 1 + 3 + 64 = 68 input channels in 3D, 1 + 2 + 64 = 67 in 2D
    assert 1 + num_encoding_channels(3) == 68 and 1 + num_encoding_channels(2) == 67
    enc = positional_encoding((5, 6, 7))
    assert enc.shape == (67, 5, 6, 7) and enc.dtype == np.float32
    np.testing.assert_allclose(enc[2, 0, 0, :], np.linspace(-1, 1, 7), atol=1e-6)
    assert np.abs(enc[3:]).max() <= 1.0 + 1e-6


def test_fourier_features_are_fixed_by_seed_42():
    a = positional_encoding((8, 8))
    b = positional_encoding((8, 8))
    np.testing.assert_array_equal(a, b)
    frequencies = np.random.default_rng(42).standard_normal((32, 2)) * 12
    u = np.arange(8) / 8
    expected = np.sin(2 * np.pi * (frequencies[0, 0] * u[3] + frequencies[0, 1] * u[5]))
    assert a[2, 3, 5] == pytest.approx(expected, abs=1e-5)
    assert not np.array_equal(positional_encoding((8, 8), seed=1), a)


def test_wrapper_adds_channels_and_exposes_decoder():
    class Inner(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder = torch.nn.Module()
            self.conv = torch.nn.Conv3d(1 + 67, 1, 1)

        def forward(self, x):
            assert x.shape[1] == 68
            return self.conv(x)

    net = PositionalEncodingNetwork(Inner(), spatial_dims=3)
    assert net(torch.zeros(2, 1, 4, 6, 4)).shape == (2, 1, 4, 6, 4)
    net.decoder.deep_supervision = False  # what nnU-Net's set_deep_supervision_enabled does
    assert net.network.decoder.deep_supervision is False


def test_build_from_plans_like_the_predictor():
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager
    config = ConfigurationManager({
        "patch_size": [16, 16], "spacing": [1, 1], "batch_size": 2,
        "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                         "arch_kwargs": {"n_stages": 3, "features_per_stage": [4, 8, 16],
                                         "conv_op": "torch.nn.modules.conv.Conv2d",
                                         "kernel_sizes": [[3, 3]] * 3, "strides": [[1, 1], [2, 2], [2, 2]],
                                         "n_conv_per_stage": [1] * 3, "n_conv_per_stage_decoder": [1] * 2,
                                         "conv_bias": True, "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d",
                                         "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None,
                                         "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                                         "nonlin_kwargs": {"inplace": True}},
                         "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}})
    from nnunet_anomaly.trainers import AnomalyTaskTrainer_PosEnc
    net = AnomalyTaskTrainer_PosEnc.build_network_architecture(None, config, 1, 1, False)
    assert isinstance(net, PositionalEncodingNetwork)
    assert net(torch.zeros(1, 1, 16, 16)).shape == (1, 1, 16, 16)
    with_ds = build_positional_encoding_network(config, 1, 1, True)
    assert isinstance(with_ds(torch.zeros(1, 1, 16, 16)), (list, tuple))


def test_rejects_bad_shapes():
    with pytest.raises(ValueError):
        positional_encoding((4,))
