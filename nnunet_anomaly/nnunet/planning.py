"""Add configurations to ``nnUNetPlans.json``: the paper's settings and tiny CI/demo ones.

nnU-Net's planner picks the patch and batch size from a GPU-memory model. The paper instead uses the
whole image as the patch (80x112x80 brain at ~2 mm, 256x256 CXR), 5 stages in 3D / 7 in 2D, batch
8 / 50. :func:`add_configuration` adds such a configuration next to the planned ones, with
``inherits_from`` so it reuses the already preprocessed data (same spacing and normalisation). The
architecture comes from nnU-Net's own ``get_pool_and_conv_props`` (bottleneck edge >= 4), and the
whole ``architecture`` block is written because nnU-Net's inheritance is a shallow ``dict.update``.

Command line::

    python -m nnunet_anomaly.nnunet.planning add-config -d 501 --name 3d_paper --patch 80 112 80 --batch 8
    python -m nnunet_anomaly.nnunet.planning add-preset -d 501 3d_paper 3d_tiny

Presets (:data:`PRESETS`): ``3d_paper``, ``2d_paper``, ``3d_tiny`` (32^3, 8 base features, 1 conv per
stage), ``2d_tiny`` (64^2, 8 base features).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from copy import deepcopy
from pathlib import Path
from typing import Sequence

__all__ = ["PRESETS", "configuration_entry", "add_configuration", "add_preset", "plans_file_of", "main"]

PRESETS = {
    "3d_paper": dict(patch_size=(80, 112, 80), batch_size=8, base_configuration="3d_fullres"),
    "2d_paper": dict(patch_size=(256, 256), batch_size=50, base_configuration="2d"),
    "3d_tiny": dict(patch_size=(32, 32, 32), batch_size=2, base_configuration="3d_fullres", base_features=8,
                    n_conv_per_stage=1),
    "2d_tiny": dict(patch_size=(64, 64), batch_size=4, base_configuration="2d", base_features=8,
                    n_conv_per_stage=1),
}


def _resolved(plans: dict, name: str) -> dict:
    configurations = plans.get("configurations", {})
    if name not in configurations:
        raise ValueError(f"configuration {name!r} is not in the plans; available: {sorted(configurations)}")
    config = deepcopy(configurations[name])
    seen = {name}
    while "inherits_from" in config:
        parent = config.pop("inherits_from")
        if parent in seen or parent not in configurations:
            raise ValueError(f"configuration {name!r}: broken inherits_from chain at {parent!r}")
        seen.add(parent)
        base = deepcopy(configurations[parent])
        base.update(config)
        config = base
    return config


#: the encoder-depth argument of the network classes nnU-Net plans (the decoder's is n_conv_per_stage_decoder)
ENCODER_DEPTH_KEYS = {"PlainConvUNet": "n_conv_per_stage", "ResidualEncoderUNet": "n_blocks_per_stage"}


def _encoder_depth_key(architecture: dict, base_configuration: str) -> str:
    """``n_conv_per_stage`` (PlainConvUNet) or ``n_blocks_per_stage`` (ResidualEncoderUNet, the ResEnc presets)."""
    class_name = str(architecture.get("network_class_name", "")).rsplit(".", 1)[-1]
    if class_name not in ENCODER_DEPTH_KEYS:
        raise ValueError(f"configuration {base_configuration!r} uses the network {class_name or '(none)'}; new "
                         f"configurations can be derived from {' and '.join(ENCODER_DEPTH_KEYS)} plans only")
    return ENCODER_DEPTH_KEYS[class_name]


def _continued(pattern, n: int, key: str) -> list:
    """`pattern` cut or continued with its last value to `n` entries, as nnU-Net's planners do.

    Examples
    --------
    >>> _continued([1, 3, 4, 6], 6, "n_blocks_per_stage"), _continued([2, 2, 2, 2, 2], 3, "n_conv_per_stage")
    ([1, 3, 4, 6, 6, 6], [2, 2, 2])
    """
    if isinstance(pattern, int):
        return [pattern] * n
    if not pattern:
        raise ValueError(f"the base configuration's architecture has no {key}; pass n_conv_per_stage")
    pattern = [int(p) for p in pattern]
    return (pattern + [pattern[-1]] * n)[:n]


def configuration_entry(plans: dict, *, patch_size: Sequence[int], batch_size: int, base_configuration: str,
                        base_features: int = 32, max_features: int | None = None, n_conv_per_stage: int | None = None,
                        min_feature_map_size: int = 4) -> dict:
    """The plans entry of a configuration derived from `base_configuration`.

    Parameters
    ----------
    plans : dict
        The loaded ``nnUNetPlans.json``.
    patch_size : sequence of int
        Patch (2 or 3 values, matching the base configuration); rounded up by nnU-Net's topology to a
        multiple of the total pooling.
    batch_size : int
    base_configuration : str
        A configuration of `plans` whose preprocessed data this one reuses.
    base_features, max_features : int
        Features of the first stage (doubled per stage) and their cap (320 in 3D, 512 in 2D by default).
    n_conv_per_stage : int, optional
        Depth of every stage: convolutions per encoder and decoder stage of a ``PlainConvUNet``; residual
        blocks per encoder stage and convolutions per decoder stage of a ``ResidualEncoderUNet`` (nnU-Net's
        ResEnc presets). None (default) continues the base configuration's pattern to the new number of
        stages (nnU-Net's default plans: 2 convolutions everywhere; ResEnc: 1, 3, 4, 6, 6, ... blocks and 1
        decoder convolution), as nnU-Net's planners would.
    min_feature_map_size : int
        Smallest bottleneck edge (nnU-Net uses 4).
    """
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    base = _resolved(plans, base_configuration)
    spacing = list(base["spacing"])
    patch_size = [int(p) for p in patch_size]
    if len(patch_size) != len(spacing):
        raise ValueError(f"patch_size {patch_size} has {len(patch_size)} axes but {base_configuration!r} is "
                         f"{len(spacing)}D")
    if min(patch_size) < 2 * min_feature_map_size or batch_size < 1 or base_features < 1 or \
            (n_conv_per_stage is not None and n_conv_per_stage < 1):
        raise ValueError(f"invalid configuration: patch {patch_size}, batch {batch_size}, features {base_features}, "
                         f"convs per stage {n_conv_per_stage}")
    architecture = deepcopy(base["architecture"])
    kwargs = architecture.get("arch_kwargs", {})
    encoder_key = _encoder_depth_key(architecture, base_configuration)
    if max_features is None:
        max_features = 320 if len(spacing) == 3 else 512
    _, strides, kernels, patch, _ = get_pool_and_conv_props(spacing, patch_size, min_feature_map_size, 999999)
    n_stages = len(strides)

    def depth(key, n):
        return [n_conv_per_stage] * n if n_conv_per_stage is not None else _continued(kwargs.get(key), n, key)

    kwargs.update({
        "n_stages": n_stages,
        "features_per_stage": [min(max_features, base_features * 2 ** i) for i in range(n_stages)],
        "kernel_sizes": [list(k) for k in kernels],
        "strides": [list(s) for s in strides],
        encoder_key: depth(encoder_key, n_stages),
        "n_conv_per_stage_decoder": depth("n_conv_per_stage_decoder", n_stages - 1),
    })
    architecture["arch_kwargs"] = kwargs
    return {"inherits_from": base_configuration, "patch_size": [int(p) for p in patch], "batch_size": int(batch_size),
            "architecture": architecture}


def plans_file_of(dataset: str | int, plans_identifier: str = "nnUNetPlans") -> Path:
    """``$nnUNet_preprocessed/DatasetXXX_Name/<plans_identifier>.json`` for a dataset id or name."""
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    if not nnUNet_preprocessed:
        raise ValueError("nnUNet_preprocessed is not set")
    return Path(os.fspath(nnUNet_preprocessed)) / maybe_convert_to_dataset_name(dataset) / f"{plans_identifier}.json"


def add_configuration(plans_file, name: str, *, patch_size: Sequence[int], batch_size: int,
                      base_configuration: str, force: bool = False, **entry_kwargs) -> dict:
    """Add configuration `name` to `plans_file` (atomically) and return its entry.

    An existing identical entry is left alone; an existing different one raises ValueError unless
    ``force=True``.
    """
    from nnunet_anomaly._io import write_json

    plans_file = Path(plans_file)
    if not plans_file.is_file():
        raise FileNotFoundError(f"{plans_file}: no plans file; run nnUNetv2_plan_and_preprocess first")
    try:
        plans = json.loads(plans_file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{plans_file}: not valid JSON ({error})") from None
    entry = configuration_entry(plans, patch_size=patch_size, batch_size=batch_size,
                                base_configuration=base_configuration, **entry_kwargs)
    existing = plans["configurations"].get(name)
    if existing is not None and json.loads(json.dumps(existing)) != json.loads(json.dumps(entry)):
        if not force:
            raise ValueError(f"{plans_file}: configuration {name!r} exists and differs; pass force=True (--force) "
                             "to replace it")
    if existing is None or existing != entry:
        plans["configurations"][name] = entry
        write_json(plans_file, plans, indent=4)
    return entry


def add_preset(plans_file, preset: str, *, name: str | None = None, force: bool = False) -> dict:
    """Add one of :data:`PRESETS` (under its own name unless `name` is given)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    return add_configuration(plans_file, name or preset, force=force, **PRESETS[preset])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nnunet_anomaly.nnunet.planning", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add-config", help="add a configuration with a given patch and batch size")
    add.add_argument("-d", "--dataset", required=True, help="dataset id or name")
    add.add_argument("--name", required=True)
    add.add_argument("--patch", type=int, nargs="+", required=True)
    add.add_argument("--batch", type=int, required=True)
    add.add_argument("--base", default=None, help="configuration to inherit from (default 3d_fullres / 2d)")
    add.add_argument("--features", type=int, default=32, help="features of the first stage")
    add.add_argument("--max-features", type=int, default=None)
    add.add_argument("--convs-per-stage", type=int, default=None,
                     help="depth of every stage (PlainConvUNet: convolutions; ResEnc: residual blocks per encoder "
                          "stage); default: the base configuration's pattern")
    add.add_argument("--plans", default="nnUNetPlans", help="plans identifier")
    add.add_argument("--force", action="store_true", help="replace an existing, different configuration")
    preset = sub.add_parser("add-preset", help=f"add presets: {', '.join(PRESETS)}")
    preset.add_argument("-d", "--dataset", required=True)
    preset.add_argument("presets", nargs="+", choices=sorted(PRESETS))
    preset.add_argument("--plans", default="nnUNetPlans")
    preset.add_argument("--force", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        plans_file = plans_file_of(args.dataset, args.plans)
        if args.command == "add-config":
            base = args.base or ("3d_fullres" if len(args.patch) == 3 else "2d")
            entry = add_configuration(plans_file, args.name, patch_size=args.patch, batch_size=args.batch,
                                      base_configuration=base, base_features=args.features,
                                      max_features=args.max_features, n_conv_per_stage=args.convs_per_stage,
                                      force=args.force)
            print(f"{plans_file}: {args.name} = patch {entry['patch_size']}, batch {entry['batch_size']}, "
                  f"{entry['architecture']['arch_kwargs']['n_stages']} stages (inherits {base})")
        else:
            for name in args.presets:
                entry = add_preset(plans_file, name, force=args.force)
                print(f"{plans_file}: {name} = patch {entry['patch_size']}, batch {entry['batch_size']}, "
                      f"{entry['architecture']['arch_kwargs']['n_stages']} stages")
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
