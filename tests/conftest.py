"""Shared test settings: nnU-Net on a 2-core CPU machine, never the network."""
import os

# nnU-Net's defaults assume a big workstation; these keep CLI runs fast on 2 cores.
os.environ.setdefault("nnUNet_def_n_proc", "2")
os.environ.setdefault("nnUNet_compile", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
