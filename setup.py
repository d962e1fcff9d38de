"""Packaging for nnunet-anomaly.

The top-level ``trainers/`` and ``dataset_conversion/`` folders are installed as the subpackages
``nnunet_anomaly.trainers`` and ``nnunet_anomaly.dataset_conversion``, so every trainer class has one
canonical module path (nnU-Net's spawned data-augmentation workers unpickle it by that path).
"""
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PACKAGE_DIR = {
    "nnunet_anomaly": "nnunet_anomaly",
    "nnunet_anomaly.trainers": "trainers",
    "nnunet_anomaly.dataset_conversion": "dataset_conversion",
}
PACKAGES = ["nnunet_anomaly", *(f"nnunet_anomaly.{p}" for p in find_packages("nnunet_anomaly")),
            "nnunet_anomaly.trainers", "nnunet_anomaly.dataset_conversion"]

# nnU-Net finds trainers only inside its own nnunetv2/training/nnUNetTrainer/ folder or through the
# nnUNet_extTrainer environment variable. So that the literal `nnUNetv2_train ... -tr AnomalyTaskTrainer`
# works after a plain `pip install`, both the wheel and the editable install carry one guarded shim
# module at NNUNET_SHIM_TARGET; it is in our RECORD, so `pip uninstall nnunet-anomaly` removes it.
# Nothing is ever written into site-packages at import or run time. See documentation/prediction.md.
NNUNET_SHIM_SOURCE = "nnunet_anomaly/plugin/ext_trainers/nnunet_anomaly_trainers.py"
NNUNET_SHIM_TARGET = "nnunetv2/training/nnUNetTrainer/nnunet_anomaly_trainers.py"


class BuildPyWithNnUNetShim(build_py):
    """Regular wheel: also place the shim in build_lib at its location inside nnunetv2."""

    def run(self):
        super().run()
        if not self.editable_mode:  # editable installs get the shim from EditableWheelWithNnUNetShim
            target = Path(self.build_lib, NNUNET_SHIM_TARGET)
            self.mkpath(str(target.parent))
            self.copy_file(NNUNET_SHIM_SOURCE, str(target), preserve_mode=False)

    def get_outputs(self, *args, **kwargs):
        outputs = super().get_outputs(*args, **kwargs)
        if not self.editable_mode:
            outputs.append(str(Path(self.build_lib, NNUNET_SHIM_TARGET)))
        return outputs


class _AddNnUNetShim:
    """Wraps setuptools' editable strategy (.pth / finder) and adds the shim file to the editable wheel."""

    def __init__(self, strategy):
        self.strategy = strategy

    def __enter__(self):
        self.strategy.__enter__()
        return self

    def __exit__(self, *exc_info):
        return self.strategy.__exit__(*exc_info)

    def __call__(self, wheel, files, mapping):
        self.strategy(wheel, files, mapping)
        wheel.writestr(NNUNET_SHIM_TARGET, Path(NNUNET_SHIM_SOURCE).read_bytes())


class EditableWheelWithNnUNetShim(editable_wheel):
    """`pip install -e .` (PEP 660): the editable wheel carries a real copy of the shim.

    setuptools' editable strategies drop build_py outputs outside our own packages, so the shim is added
    where the strategy writes its .pth file (setuptools' `_select_strategy`, stable since setuptools 64).
    """

    def run(self):
        if not hasattr(editable_wheel, "_select_strategy"):
            self.warn("this setuptools cannot add the nnU-Net trainer shim to an editable install; "
                      "set nnUNet_extTrainer=$(python -m nnunet_anomaly.plugin) instead")
        super().run()

    def _select_strategy(self, *args, **kwargs):
        return _AddNnUNetShim(super()._select_strategy(*args, **kwargs))


setup(
    name="nnunet-anomaly",
    version="0.1.0",
    description=(
        "nnU-Net v2 extension that learns to localise anomalies in medical images from healthy "
        "images and synthetic anomaly tasks (Baugh et al., MICCAI 2023, and beyond)"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={"nnunet_anomaly": ["data/*.json", "data/*.LICENSE"]},
    install_requires=[
        "nnunetv2>=2.8.1",
        "batchgeneratorsv2>=0.3.0",
        "acvl-utils>=0.2",
        "torch>=2.1.2",
        "numpy>=1.24",
        "scipy>=1.10",
        "scikit-image>=0.21",
        "scikit-learn>=1.2",
        "SimpleITK>=2.2",
        "nibabel>=5.0",
        "pydicom>=2.4",
        "matplotlib>=3.7",
        "Pillow>=9",
        "tqdm>=4.64",
        # nnunetv2 imports distutils, which Python >= 3.12 only has through setuptools
        "setuptools>=68",
    ],
    extras_require={
        # real anatomy for the demo, the task montage and the integration tests (no run-time download)
        "demo": ["nilearn>=0.10", "pydicom-data>=1.0"],
        "test": ["pytest>=7.4", "hypothesis>=6.80", "pie-torch==0.0.1", "nilearn>=0.10", "pydicom-data>=1.0"],
    },
    cmdclass={"build_py": BuildPyWithNnUNetShim, "editable_wheel": EditableWheelWithNnUNetShim},
    entry_points={
        "console_scripts": [
            "nnunet_anomaly=nnunet_anomaly.cli:main",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Medical Science Apps.",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
