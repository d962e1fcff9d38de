"""The ``nnunet_anomaly`` command: home of our own verbs.

Each verb lives in its own module, imported only when that verb runs (so ``--help`` is instant and a
verb's heavy dependencies never slow down the others). A verb module defines
``configure_parser(parser)`` and ``run(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import NamedTuple


class Verb(NamedTuple):
    module: str
    summary: str


VERBS: dict[str, Verb] = {
    "show-tasks": Verb("nnunet_anomaly.visualise", "render what each synthetic task does (before, after, difference, label) to a PNG"),
    "evaluate": Verb("nnunet_anomaly.evaluation.cli", "score anomaly maps against ground-truth masks; tables, JSON, CSV and figures"),
    "predict": Verb("nnunet_anomaly.nnunet.predict", "nnUNetv2_predict for fold ensembles: probabilities averaged, folds weighted by validation"),
    "crossval": Verb("nnunet_anomaly.nnunet.crossval", "cross-validation of anomaly models from their folds' synthetic validation; ranks models"),
    "export": Verb("nnunet_anomaly.export", "export nnU-Net probability maps as NIfTI/PNG anomaly maps in the original geometry"),
    "demo": Verb("nnunet_anomaly.demo", "the whole product end to end on the embedded offline demo dataset"),
}


def _usage() -> str:
    width = max(map(len, VERBS))
    lines = ["usage: nnunet_anomaly VERB [options]   (nnunet_anomaly VERB --help for a verb's options)", "", "verbs:"]
    lines += [f"  {name:<{width}}  {verb.summary}" for name, verb in VERBS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from nnunet_anomaly import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in VERBS:
        print(f"nnunet_anomaly: unknown verb {name!r}; choose one of {', '.join(VERBS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(VERBS[name].module)
    parser = argparse.ArgumentParser(prog=f"nnunet_anomaly {name}", description=VERBS[name].summary)
    module.configure_parser(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError) as error:
        # Bad input is the user's to fix: one clear line, no traceback from deep inside a library.
        print(f"nnunet_anomaly {name}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"nnunet_anomaly {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
