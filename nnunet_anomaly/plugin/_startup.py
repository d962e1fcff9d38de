"""Start-up hook of nnunet-anomaly, run by ``nnunet_anomaly.pth`` when any Python process of the environment starts.

Python runs the import line of every ``.pth`` file in ``site-packages`` at start-up. Ours (shipped by
``pip install .`` and ``pip install -e .`` alike, and removed by ``pip uninstall``) executes this file,
which does two cheap things and is silent on any error:

1. **Trainer discovery.** It appends our trainer folder (``plugin/ext_trainers``, see
   :func:`nnunet_anomaly.plugin.ext_trainer_dir`) to ``nnUNet_extTrainer``, the variable nnU-Net reads
   when it looks a trainer up. What the user put there stays first, so their own trainers win a name
   clash, and the folder is added only once (spawned workers inherit the variable). So
   ``nnUNetv2_train ... -tr AnomalyTaskTrainer`` and ``nnUNetv2_predict`` work with no configuration,
   and nothing of ours lies in nnU-Net's own package folder.
2. **nnU-Net's segmentation-only tools.** ``nnUNetv2_accumulate_crossval_results``,
   ``nnUNetv2_find_best_configuration`` and ``nnUNetv2_determine_postprocessing`` score
   segmentations by Dice against ``labelsTr``; for an anomaly model they copy nothing and fail deep
   inside. When one of them is started on an anomaly model (its ``dataset.json`` holds our single
   ``anomaly`` region), the process stops at once with one line saying what to use instead. Any
   other use of these tools is left alone.
3. **nnU-Net's trainer-lookup lines.** nnU-Net prints "Trainer '...' not found in
   nnunetv2.training.nnUNetTrainer. Searching in external trainer paths..." before it finds our
   trainers on ``nnUNet_extTrainer``, which reads like an error. A finder on ``sys.meta_path``
   (it answers for ``nnunetv2.utilities.find_objects`` only, and costs an ordinary import one string
   comparison) wraps that module's trainer lookup once it is loaded: the search lines are dropped,
   "Using trainer '...' from: ..." stays, and on a failed lookup every line is printed.

Set ``nnunet_anomaly_startup_hook=0`` to switch all three off (then ``export nnUNet_extTrainer=$(python -m
nnunet_anomaly.plugin)`` finds the trainers). The ``.pth`` line runs this file by path, without
importing the ``nnunet_anomaly`` package, so a source checkout on ``sys.path`` is never shadowed by
the installed copy; the file therefore uses the standard library only.
"""

import os
import sys

SWITCH = "nnunet_anomaly_startup_hook"
"""Environment variable; ``0`` (or ``false``, ``no``, ``off``) turns the start-up hook off."""

EXT_TRAINER_VARIABLE = "nnUNet_extTrainer"

#: the labels every anomaly model's dataset.json carries (nnunet_anomaly.nnunet.trainer.ANOMALY_LABELS)
ANOMALY_LABELS = {"background": 0, "anomaly": [1, 2]}

#: nnU-Net's segmentation-only tools, and what to use instead for anomaly models
NNUNET_TOOLS = {
    "nnUNetv2_accumulate_crossval_results":
        "nnU-Net scores cross-validation segmentations by Dice against labelsTr, which does not apply; "
        "use `nnunet_anomaly crossval -d {dataset} -c {configuration} -tr {trainer} -p {plans}` (synthetic "
        "validation AP of every fold; documentation/prediction.md)",
    "nnUNetv2_find_best_configuration":
        "nnU-Net ranks configurations by the Dice of segmentations against labelsTr and determines "
        "connected-component postprocessing, neither of which applies; rank anomaly models with `nnunet_anomaly "
        "crossval -d {dataset} -c {configuration} -tr {trainer} -p {plans}` (documentation/prediction.md)",
    "nnUNetv2_determine_postprocessing":
        "anomaly maps are continuous scores, so there is no connected-component postprocessing to determine; use "
        "the maps as they are (`nnunet_anomaly evaluate`, `nnunet_anomaly export`; documentation/prediction.md)",
}


def hook_enabled(environ=os.environ) -> bool:
    """False when the user switched the hook off with ``nnunet_anomaly_startup_hook=0``.

    Examples
    --------
    >>> hook_enabled({}), hook_enabled({"nnunet_anomaly_startup_hook": "0"})
    (True, False)
    """
    return environ.get(SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def _same_folder(a: str, b: str) -> bool:
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def with_folder_appended(value, folder: str) -> str:
    """``nnUNet_extTrainer`` with `folder` appended; the user's entries are kept, in order, and never duplicated.

    Examples
    --------
    >>> import os
    >>> with_folder_appended(None, "/ours")
    '/ours'
    >>> with_folder_appended(os.pathsep.join(["/mine", "/also"]), "/ours").split(os.pathsep)
    ['/mine', '/also', '/ours']
    >>> with_folder_appended(os.pathsep.join(["/ours", "/mine"]), "/ours").split(os.pathsep)
    ['/ours', '/mine']
    """
    if not value:
        return folder
    if any(entry.strip() and _same_folder(entry, folder) for entry in value.split(os.pathsep)):
        return value
    return value + os.pathsep + folder


def register_ext_trainer_dir(package_dir: str, environ=os.environ) -> None:
    """Append ``<package_dir>/plugin/ext_trainers`` to ``nnUNet_extTrainer`` in `environ` (when the folder exists)."""
    folder = os.path.join(package_dir, "plugin", "ext_trainers")
    if os.path.isdir(folder):
        environ[EXT_TRAINER_VARIABLE] = with_folder_appended(environ.get(EXT_TRAINER_VARIABLE), folder)


# ------------------------------------------------------------------------ nnU-Net's evaluation tools
def tool_name(argv0: str) -> str:
    """The console-script name in ``sys.argv[0]`` (``.../bin/nnUNetv2_x``, ``nnUNetv2_x.exe``, ``nnUNetv2_x-script.py``).

    Examples
    --------
    >>> tool_name("/venv/bin/nnUNetv2_find_best_configuration"), tool_name("C:/v/nnUNetv2_predict.exe")
    ('nnUNetv2_find_best_configuration', 'nnUNetv2_predict')
    """
    name = os.path.basename(argv0)
    for suffix in (".exe", "-script.py", ".py"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def is_anomaly_dataset_json(path: str) -> bool:
    """True when `path` is the ``dataset.json`` of an anomaly model (our single ``anomaly`` region)."""
    import json  # only here: the start-up path of every other process stays import-free

    try:
        with open(path, encoding="utf-8") as handle:
            dataset = json.load(handle)
    except (OSError, ValueError):
        return False
    return isinstance(dataset, dict) and dataset.get("labels") == ANOMALY_LABELS \
        and list(dataset.get("regions_class_order") or []) == [1]


def _dataset_folders(results: str, dataset: str) -> list:
    """``nnUNet_results/DatasetXXX_Name`` folders for a dataset id or name (like nnU-Net's name lookup)."""
    if dataset.startswith("Dataset"):
        return [os.path.join(results, dataset)]
    try:
        prefix = f"Dataset{int(dataset):03d}_"
    except ValueError:
        return []
    try:
        return [os.path.join(results, d) for d in sorted(os.listdir(results)) if d.startswith(prefix)]
    except OSError:
        return []


def _parse(tool: str, args: list):
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    if tool == "nnUNetv2_determine_postprocessing":
        parser.add_argument("-i")
        parser.add_argument("-dataset_json")
    else:
        many = "+" if tool == "nnUNetv2_find_best_configuration" else None
        parser.add_argument("dataset")
        parser.add_argument("-c", nargs=many, default=["2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres"]
                            if many else "3d_fullres")
        parser.add_argument("-tr", nargs=many, default=["nnUNetTrainer"] if many else "nnUNetTrainer")
        parser.add_argument("-p", nargs=many, default=["nnUNetPlans"] if many else "nnUNetPlans")
    known, _ = parser.parse_known_args(args)
    return known


def refusal(argv, environ=os.environ):
    """The one-line message that stops an nnU-Net evaluation tool started on an anomaly model, else None.

    Parameters
    ----------
    argv : sequence of str
        ``sys.argv`` of the process.
    environ : mapping
        Where ``nnUNet_results`` is read.

    Returns
    -------
    str or None
        None for any other program, for ``--help``, and for models that are not anomaly models.
    """
    if not argv:
        return None
    tool = tool_name(argv[0])
    if tool not in NNUNET_TOOLS or {"-h", "--help"} & set(argv[1:]):
        return None
    try:
        args = _parse(tool, list(argv[1:]))
    except (SystemExit, Exception):  # noqa: BLE001 -- nnU-Net's own parser will report bad arguments
        return None
    if tool == "nnUNetv2_determine_postprocessing":
        if not args.i:
            return None
        dataset_json = args.dataset_json or os.path.join(args.i, "dataset.json")
        if not is_anomaly_dataset_json(dataset_json):
            return None
        return f"{tool}: {args.i} holds predictions of an nnunet-anomaly model; " + NNUNET_TOOLS[tool]
    results = environ.get("nnUNet_results")
    if not results or args.dataset is None:
        return None
    as_list = lambda v: v if isinstance(v, list) else [v]  # noqa: E731
    for folder in _dataset_folders(results, args.dataset):
        for trainer in as_list(args.tr):
            for plans in as_list(args.p):
                for configuration in as_list(args.c):
                    model = os.path.join(folder, f"{trainer}__{plans}__{configuration}")
                    if is_anomaly_dataset_json(os.path.join(model, "dataset.json")):
                        hint = NNUNET_TOOLS[tool].format(dataset=args.dataset, configuration=configuration,
                                                         trainer=trainer, plans=plans)
                        return f"{tool}: {model} is an nnunet-anomaly model (one sigmoid anomaly channel); {hint}"
    return None


# ------------------------------------------------------------------------ nnU-Net's trainer-lookup lines
#: the nnU-Net module whose ``recursive_find_trainer_class_by_name`` prints the search lines
FIND_OBJECTS_MODULE = "nnunetv2.utilities.find_objects"
#: modules that import that function by name (they are patched too when already loaded)
_LOOKUP_USERS = (FIND_OBJECTS_MODULE, "nnunetv2.inference.predict_from_raw_data", "nnunetv2.run.run_training")
_SEARCH_LINE_STARTS = ("Searching in external trainer paths", "Searching in: ", "Searching for class ", "Found class ")


def _is_search_line(line: str) -> bool:
    line = line.strip()
    return line.startswith(_SEARCH_LINE_STARTS) or (
        line.startswith("Trainer '") and line.endswith("not found in nnunetv2.training.nnUNetTrainer."))


def quiet_lookup_output(text: str) -> str:
    """nnU-Net's trainer-lookup output without its search lines; what else it printed is kept, in order.

    Examples
    --------
    >>> print(quiet_lookup_output(
    ...     "Trainer 'T' not found in nnunetv2.training.nnUNetTrainer.\\n"
    ...     "Searching in external trainer paths from environment variable 'nnUNet_extTrainer'...\\n"
    ...     "Searching in: /ours\\nUsing trainer 'T' from: /ours\\n"), end="")
    Using trainer 'T' from: /ours
    """
    return "".join(line for line in text.splitlines(keepends=True) if not _is_search_line(line))


def quiet_lookup(find):
    """`find` (nnU-Net's ``recursive_find_trainer_class_by_name``) printing only :func:`quiet_lookup_output`.

    When the lookup fails, everything it printed is shown (the search lines then say where it looked).
    Wrapping twice returns the first wrapper.
    """
    if getattr(find, "_nnunet_anomaly_quiet", False):
        return find

    def recursive_find_trainer_class_by_name(trainer_name, *args, **kwargs):
        import contextlib
        import io

        buffer = io.StringIO()
        try:
            with contextlib.redirect_stdout(buffer):
                found = find(trainer_name, *args, **kwargs)
        except BaseException:
            if sys.stdout is not None:
                sys.stdout.write(buffer.getvalue())
            raise
        if sys.stdout is not None:
            sys.stdout.write(quiet_lookup_output(buffer.getvalue()))
        return found

    recursive_find_trainer_class_by_name.__doc__ = getattr(find, "__doc__", None)
    recursive_find_trainer_class_by_name.__wrapped__ = find
    recursive_find_trainer_class_by_name._nnunet_anomaly_quiet = True
    return recursive_find_trainer_class_by_name


def quiet_trainer_lookup() -> None:
    """In this process, make nnU-Net's loaded trainer lookup quiet (:func:`quiet_lookup`); for our own commands,
    which need it even where the start-up hook is switched off."""
    for name in _LOOKUP_USERS:
        module = sys.modules.get(name)
        find = getattr(module, "recursive_find_trainer_class_by_name", None)
        if find is not None:
            module.recursive_find_trainer_class_by_name = quiet_lookup(find)


class _QuietLoader:
    """The loader of nnU-Net's ``find_objects``, which wraps its trainer lookup after running the module."""

    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):
        return getattr(self.__dict__["loader"], name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        find = getattr(module, "recursive_find_trainer_class_by_name", None)
        if find is not None:
            module.recursive_find_trainer_class_by_name = quiet_lookup(find)


class QuietTrainerLookupFinder:
    """A ``sys.meta_path`` finder for :data:`FIND_OBJECTS_MODULE` only: the other finders find it, we wrap its loader."""

    _nnunet_anomaly_quiet = True

    def find_spec(self, fullname, path=None, target=None):
        if fullname != FIND_OBJECTS_MODULE:
            return None
        for finder in sys.meta_path:
            if getattr(finder, "_nnunet_anomaly_quiet", False) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install_quiet_trainer_lookup(meta_path=None) -> None:
    """Put :class:`QuietTrainerLookupFinder` first on ``sys.meta_path`` (once; spawned workers run the hook again)."""
    meta_path = sys.meta_path if meta_path is None else meta_path
    if not any(getattr(finder, "_nnunet_anomaly_quiet", False) for finder in meta_path):
        meta_path.insert(0, QuietTrainerLookupFinder())


def main(environ=os.environ, argv=None) -> None:
    """What the ``.pth`` line runs: register the trainer folder, quiet nnU-Net's trainer search, then maybe stop
    an nnU-Net evaluation tool."""
    if not hook_enabled(environ):
        return
    package_dir = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    register_ext_trainer_dir(package_dir, environ)
    install_quiet_trainer_lookup()
    message = refusal(sys.argv if argv is None else argv, environ)
    if message:
        # Python is still starting (site is processing .pth files): nothing to clean up, and a SystemExit
        # here would abort the interpreter with a traceback, so write the line and leave.
        sys.stderr.write(f"error: {message}\n")
        sys.stderr.flush()
        os._exit(1)


if __name__ == "_nnunet_anomaly_startup":  # executed by nnunet_anomaly.pth
    main()
