"""Positional-encoding variant: the reference's CoordConv + random-Fourier-feature input channels."""
from nnunet_anomaly.nnunet.positional_encoding import build_positional_encoding_network
from nnunet_anomaly.nnunet.trainer import AnomalyTaskTrainer


class AnomalyTaskTrainer_PosEnc(AnomalyTaskTrainer):
    """D coordinate channels + 64 Fourier features (seed 42, scale 12) added inside the network."""

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels, num_output_channels,
                                   enable_deep_supervision=True):
        return build_positional_encoding_network(configuration_manager, num_input_channels, num_output_channels,
                                                 enable_deep_supervision)
