"""Packaging for nnunet-anomaly.

The top-level ``trainers/`` and ``dataset_conversion/`` folders are installed as the subpackages
``nnunet_anomaly.trainers`` and ``nnunet_anomaly.dataset_conversion``, so every trainer class has one
canonical module path (nnU-Net's spawned data-augmentation workers unpickle it by that path).
"""
from setuptools import find_packages, setup

PACKAGE_DIR = {
    "nnunet_anomaly": "nnunet_anomaly",
    "nnunet_anomaly.trainers": "trainers",
    "nnunet_anomaly.dataset_conversion": "dataset_conversion",
}
PACKAGES = ["nnunet_anomaly", *(f"nnunet_anomaly.{p}" for p in find_packages("nnunet_anomaly")),
            "nnunet_anomaly.trainers", "nnunet_anomaly.dataset_conversion"]

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
        "tqdm>=4.64",
        # nnunetv2 imports distutils, which Python >= 3.12 only has through setuptools
        "setuptools>=68",
    ],
    extras_require={
        # real anatomy for the demo, the task montage and the integration tests (no run-time download)
        "demo": ["nilearn>=0.10", "pydicom-data>=1.0"],
        "test": ["pytest>=7.4", "hypothesis>=6.80", "pie-torch==0.0.1", "nilearn>=0.10", "pydicom-data>=1.0"],
    },
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
