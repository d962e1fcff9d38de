"""Shared test settings: nnU-Net on a 2-core CPU machine, never the network."""
import os

# nnU-Net's defaults assume a big workstation; these keep CLI runs fast on 2 cores.
os.environ.setdefault("nnUNet_def_n_proc", "2")
os.environ.setdefault("nnUNet_compile", "false")
os.environ.setdefault("MPLBACKEND", "Agg")


def _fake_brain_cache() -> str:
    """A brain cache (nnunet_anomaly.offline_brains) of warped MNI152 copies under every fetched name.

    The demo and Dataset990 read their anatomies from the cache that ``make brains`` fills; the tests
    never download, so they get this stand-in (each name a differently scaled and contrasted template),
    through ``$nnunet_anomaly_brains``, which tools started by the tests inherit.
    """
    import atexit
    import shutil
    import tempfile

    import numpy as np

    folder = tempfile.mkdtemp(prefix="nnunet_anomaly_test_brains_")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["nnunet_anomaly_brains"] = folder
    from nnunet_anomaly.acquisition import rescale
    from nnunet_anomaly.offline_brains import BRAIN_SOURCES, BUNDLED, write_cached_brain
    from nnunet_anomaly.offline_data import mni152_brain

    image, mask, spacing = mni152_brain(2)
    for k, source in enumerate(s for s in BRAIN_SOURCES.values() if s.name != BUNDLED):
        scale = 0.9 + 0.03 * k
        warped, warped_mask = rescale(image[None], mask, (scale, 1.0, 2.0 - scale))
        values = np.where(warped_mask, np.exp(0.3 * warped[0] * (1 if k % 2 else -1)), 0.0)
        write_cached_brain(folder, source.name, values, warped_mask, np.diag([*spacing, 1.0]), kind=source.kind,
                           contrast=source.contrast, description=f"test stand-in for {source.name}")
    return folder


if not os.environ.get("nnunet_anomaly_brains"):
    _fake_brain_cache()
