"""``python -m nnunet_anomaly.plugin`` prints our ``nnUNet_extTrainer`` folder; ``--check`` says how nnU-Net finds us.

The start-up hook puts the folder on ``nnUNet_extTrainer`` by itself; without it (switched off, or
``pip install --target``): ``export nnUNet_extTrainer=$(python -m nnunet_anomaly.plugin)``.
"""
import argparse

from nnunet_anomaly.plugin import discovery_report, ext_trainer_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nnunet_anomaly.plugin",
        description="Print the folder to put on nnUNet_extTrainer (nnU-Net's official external-trainer route).",
    )
    parser.add_argument("--check", action="store_true",
                        help="say whether the start-up hook is installed, whether our folder is on nnUNet_extTrainer, "
                             "and whether the installed nnU-Net is in the tested range")
    args = parser.parse_args(argv)
    print(discovery_report() if args.check else ext_trainer_dir())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
