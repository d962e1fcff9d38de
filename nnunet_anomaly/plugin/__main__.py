"""``python -m nnunet_anomaly.plugin`` prints the ``nnUNet_extTrainer`` folder; ``--check`` shows both routes.

Usage: ``export nnUNet_extTrainer=$(python -m nnunet_anomaly.plugin)``
"""
import argparse

from nnunet_anomaly.plugin import discovery_report, ext_trainer_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nnunet_anomaly.plugin",
        description="Print the folder to put on nnUNet_extTrainer (nnU-Net's official external-trainer route).",
    )
    parser.add_argument("--check", action="store_true", help="say which trainer discovery routes are active")
    args = parser.parse_args(argv)
    print(discovery_report() if args.check else ext_trainer_dir())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
