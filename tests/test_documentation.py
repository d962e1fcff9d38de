"""The documentation cannot rot: its code runs and its commands parse.

(a) Every ```python block of ``README.md`` and ``documentation/*.md`` is executed (the blocks of one
    file in order, sharing one namespace, in a temporary folder). A block that needs a trained model
    or a real dataset is skipped only when an HTML comment ``<!-- docs-test: skip (reason) -->``
    stands right before it; such blocks must stay few.
(b) Every command line of a ```bash / ```sh / ```console block that calls one of our tools or
    nnU-Net's (``nnunet_anomaly ...``, ``python -m nnunet_anomaly...``, ``python dataset_conversion/X.py``,
    ``nnUNetv2_*``, ``make ...``) is parsed by that tool's real argument parser, without running the
    tool: ``argparse.ArgumentParser.parse_args`` is wrapped so that it parses and then stops the
    program. Placeholders (``$VAR``, ``${VAR}``, ``$(...)``, ``<name>``) become harmless values.
(c) The commands the demo runs (``nnunet_anomaly demo``) are checked the same way; quickstart.md shows
    every command form the demo runs, with the same flags; and every tool the documentation uses is
    run for real by the demo or by a named test.
(d) Relative links between the documents point at files that exist.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import re
import runpy
import shlex
import sys
import types
import warnings
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "documentation"
SKIP_MARKER = re.compile(r"<!--\s*docs-test:\s*skip\s*\((?P<reason>[^)]*)\)\s*-->")
FENCE = re.compile(r"^(?P<indent>[ ]{0,3})```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.MULTILINE | re.DOTALL)
SHELL_LANGUAGES = {"bash", "sh", "shell", "console", "zsh"}
#: at most this fraction of the python blocks may be skipped
MAX_SKIPPED_FRACTION = 0.34


class Block(NamedTuple):
    file: Path
    line: int
    language: str
    code: str
    skip_reason: str | None


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def code_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, with their skip markers.

    Examples
    --------
    >>> import tempfile
    >>> md = Path(tempfile.mkdtemp()) / "x.md"
    >>> _ = md.write_text("text\\n<!-- docs-test: skip (needs BraTS) -->\\n```python\\nprint(1)\\n```\\n")
    >>> [(b.language, b.code, b.skip_reason, b.line) for b in code_blocks(md)]
    [('python', 'print(1)\\n', 'needs BraTS', 3)]
    """
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        previous = before[-1] if before else ""
        marker = SKIP_MARKER.search(previous)
        blocks.append(Block(path, text.count("\n", 0, match.start()) + 1, match.group("lang").lower(),
                            match.group("body"), marker.group("reason") if marker else None))
    return blocks


def all_blocks(language_set) -> list[Block]:
    return [b for path in markdown_files() for b in code_blocks(path) if b.language in language_set]


# ============================================================================= (a) python blocks
def _python_files():
    return [p for p in markdown_files() if any(b.language == "python" for b in code_blocks(p))]


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # a real module, so that dataclasses and pickling in the examples find their module
    module = types.ModuleType("docs_" + re.sub(r"\W", "_", path.stem))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for block in code_blocks(path):
        if block.language != "python" or block.skip_reason is not None:
            continue
        where = f"{path.relative_to(ROOT)}:{block.line}"
        try:
            exec(compile(block.code, where, "exec"), namespace)
        except Exception as error:  # name the block, not this test's line
            pytest.fail(f"python block at {where} failed: {type(error).__name__}: {error}")


def test_few_python_blocks_are_skipped():
    blocks = all_blocks({"python"})
    skipped = [b for b in blocks if b.skip_reason is not None]
    assert blocks, "the documentation has no python example at all"
    assert all(b.skip_reason.strip() for b in skipped), "a skip marker must give its reason"
    assert len(skipped) <= MAX_SKIPPED_FRACTION * len(blocks), (
        f"{len(skipped)} of {len(blocks)} python blocks are skipped: "
        + ", ".join(f"{b.file.name}:{b.line} ({b.skip_reason})" for b in skipped))


# ============================================================================= (b) command lines
class _Parsed(Exception):
    """Raised by the wrapped parse_args once a command line has been parsed successfully."""


@contextlib.contextmanager
def _parse_only(argv0: str, args: list[str]):
    """Within the block, parse_args parses (sys.argv or the given list) and then stops the program."""
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, arguments=None, namespace=None):
        original(self, arguments, namespace)
        raise _Parsed()

    saved_argv = sys.argv
    sys.argv = [argv0, *args]
    argparse.ArgumentParser.parse_args = parse_then_stop
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_args = original
        sys.argv = saved_argv


def _console_script(name: str):
    matches = [ep for ep in importlib.metadata.entry_points(group="console_scripts") if ep.name == name]
    if not matches:
        raise AssertionError(f"no console script {name!r} is installed")
    return matches[0]


PLACEHOLDERS = [
    (re.compile(r"\$\([^)]*\)"), "placeholder"),     # $(command)
    (re.compile(r"\$\{[^}]*\}"), "0"),               # ${VAR}
    (re.compile(r"\$\w+"), "0"),                     # $VAR
    (re.compile(r"<[\w .:/-]+>"), "0"),              # <placeholder>
]


def substitute_placeholders(line: str) -> str:
    """Make a documented command line parseable without its environment.

    Examples
    --------
    >>> substitute_placeholders("nnUNetv2_train 501 3d_fullres $SLURM_ARRAY_TASK_ID -tr <trainer>")
    'nnUNetv2_train 501 3d_fullres 0 -tr 0'
    """
    for pattern, value in PLACEHOLDERS:
        line = pattern.sub(value, line)
    return line


#: words that may stand before a command on the same line
PREFIX_WORDS = {"do", "then", "else", "time", "nohup", "exec", "srun", "!"}


def shell_commands(block: Block) -> list[tuple[int, list[str]]]:
    """(line number, argv) of every simple command of a shell block (continuations joined).

    Examples
    --------
    >>> b = Block(Path("x.md"), 10, "bash", "# c\\nexport A=1\\nX=2 nnUNetv2_train 1 2d \\\\\\n  0 && make test  # hi\\n", None)
    >>> shell_commands(b)
    [(13, ['nnUNetv2_train', '1', '2d', '0']), (13, ['make', 'test'])]
    """
    commands = []
    lines = block.code.splitlines()
    index = 0
    while index < len(lines):
        start = index
        line = lines[index]
        while line.rstrip().endswith("\\") and index + 1 < len(lines):
            index += 1
            line = line.rstrip()[:-1] + " " + lines[index]
        index += 1
        if block.language == "console":
            if not line.lstrip().startswith("$ "):
                continue  # output, not a command
            line = line.lstrip()[2:]
        try:
            tokens = shlex.split(substitute_placeholders(line), comments=True)
        except ValueError:
            continue
        command: list[str] = []
        for token in [*tokens, ";"]:
            if token in (";", "&&", "||", "|", "&"):
                while command and (re.match(r"^\w+=", command[0]) or command[0] in PREFIX_WORDS):
                    command.pop(0)  # VAR=value prefixes, `do nnUNetv2_train ...`, `time make demo`
                if command and command[0] not in ("export", "cd", "source", "."):
                    commands.append((block.line + 1 + start, command))
                command = []
            else:
                command.append(token)
    return commands


def _is_python(token: str) -> bool:
    return re.fullmatch(r"(.*/)?python(3(\.\d+)?)?", token) is not None


def tool_of(argv: list[str]) -> str | None:
    """The name of our / nnU-Net's tool that `argv` calls, or None for any other command.

    Examples
    --------
    >>> tool_of(["python", "-m", "nnunet_anomaly", "evaluate", "-h"]), tool_of(["nnUNetv2_train", "1"])
    ('nnunet_anomaly', 'nnUNetv2_train')
    >>> tool_of(["python", "dataset_conversion/Dataset990_MNIDemo.py"]), tool_of(["pip", "install", "."])
    ('dataset_conversion/Dataset990_MNIDemo.py', None)
    """
    head = Path(argv[0]).name if argv else ""
    if head == "make":
        return "make"
    if head.startswith("nnUNetv2_") or head == "nnunet_anomaly":
        return head
    if _is_python(argv[0]) and len(argv) >= 2:
        if argv[1] == "-m" and len(argv) >= 3 and argv[2].split(".")[0] == "nnunet_anomaly":
            return argv[2]
        if argv[1].endswith(".py") and "dataset_conversion/" in argv[1]:
            return "dataset_conversion/" + argv[1].split("dataset_conversion/")[-1]
    return None


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([\w.-]+)\s*:(?!=)", text, re.MULTILINE))


def validate_command(argv: list[str]) -> str | None:
    """Parse `argv` with the real parser of its tool; return an error message, or None when it parses.

    Nothing runs beyond the argument parsing (``--help`` prints and counts as parsed).
    """
    tool = tool_of(argv)
    if tool is None:
        return None
    if tool == "make":
        targets = [a for a in argv[1:] if not a.startswith("-") and "=" not in a]
        missing = sorted(set(targets) - _make_targets())
        return f"no Makefile target {missing}" if missing else None
    if _is_python(argv[0]) and argv[1] == "-m":
        module, args = argv[2], argv[3:]
        run = lambda: runpy.run_module(module, run_name="__main__", alter_sys=True)  # noqa: E731
    elif tool.startswith("dataset_conversion/"):
        script, args = ROOT / tool, argv[2:]
        if not script.is_file():
            return f"no script {tool}"
        run = lambda: runpy.run_path(str(script), run_name="__main__")  # noqa: E731
    else:
        entry = _console_script(tool)
        args = argv[1:]
        run = entry.load()
    stderr = io.StringIO()
    try:
        with _parse_only(tool, args), contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # runpy: "found in sys.modules" on a re-run
            returned = run()
    except _Parsed:
        return None
    except SystemExit as exit_:
        if exit_.code in (0, None):
            return None  # --help, or a tool that validated and exited cleanly
        return f"exit status {exit_.code}: {stderr.getvalue().strip().splitlines()[-1:] or ''}"
    except Exception as error:  # noqa: BLE001 - report whatever the tool raised while parsing
        return f"{type(error).__name__}: {error}"
    if isinstance(returned, int) and not isinstance(returned, bool) and returned != 0:
        return f"exit status {returned}: {stderr.getvalue().strip().splitlines()[-1:] or ''}"
    if returned in (0, None) and set(args) & {"-h", "--help", "-V", "--version"}:
        return None  # a usage text printed without argparse (`nnunet_anomaly --help`)
    return "the tool returned without parsing any argument (is it a command-line tool?)"


def _documented_commands():
    out = []
    for block in all_blocks(SHELL_LANGUAGES):
        if block.skip_reason is not None:
            continue
        for line, argv in shell_commands(block):
            if tool_of(argv) is not None:
                out.append(pytest.param(argv, id=f"{block.file.relative_to(ROOT)}:{line}:{' '.join(argv[:3])}"))
    return out


@pytest.mark.parametrize("argv", _documented_commands())
def test_documented_command_parses(argv):
    error = validate_command(argv)
    assert error is None, f"`{shlex.join(argv)}`: {error}"


def test_validator_catches_a_bad_flag():
    assert validate_command(["nnunet_anomaly", "evaluate", "--no-such-flag"]) is not None
    assert validate_command(["nnUNetv2_train", "1", "3d_fullres", "0", "--no-such-flag"]) is not None
    assert validate_command(["make", "no-such-target"]) is not None
    assert validate_command(["nnunet_anomaly", "no-such-verb"]) is not None
    assert validate_command(["python", "-m", "nnunet_anomaly", "show-tasks", "--setting", "4d"]) is not None
    assert validate_command(["nnUNetv2_predict", "-i", "IN", "-o", "OUT", "-d", "1", "-c", "3d_fullres", "-f", "0"]) is None


# ============================================================================= (c) the demo's commands
def _demo_commands(tmp_path) -> list[list[str]]:
    """Every argv the demo would run (recorded, not run)."""
    from nnunet_anomaly import demo

    recorded = []

    class Recorder(demo.Workspace):
        def command(self, step, argv, **kwargs):
            recorded.append([str(a) for a in argv])

    for settings in (demo.DEMO, demo.QUICK):
        # with real lesions present, so that their prediction and evaluation commands are checked too
        ws = Recorder(tmp_path / settings.name, settings, device="cpu", real_lesion_sources={"brain1": None})
        for step in demo.demo_steps(ws):
            if step.name in ("synthetic_test", "real_lesions", "report"):
                continue  # in-process Python, not a command
            step.action(ws)
    for argv in recorded:
        if _is_python(argv[0]) or argv[0] == sys.executable:
            argv[0] = "python"
        else:
            argv[0] = Path(argv[0]).name
    return recorded


def test_demo_commands_parse(tmp_path):
    commands = _demo_commands(tmp_path)
    tools = {tool_of(c) for c in commands}
    assert {"nnUNetv2_plan_and_preprocess", "nnUNetv2_train", "nnUNetv2_predict", "nnunet_anomaly"} <= tools
    for argv in commands:
        error = validate_command(argv)
        assert error is None, f"demo command `{shlex.join(argv)}`: {error}"


def exercise_key(argv: list[str]) -> str | None:
    """What a command exercises: the tool, plus the verb for ``nnunet_anomaly``.

    Examples
    --------
    >>> exercise_key(["python", "-m", "nnunet_anomaly", "export", "-p", "P"]), exercise_key(["nnUNetv2_train", "1"])
    ('nnunet_anomaly export', 'nnUNetv2_train')
    """
    tool = tool_of(argv)
    if tool == "nnunet_anomaly":
        rest = argv[3:] if _is_python(argv[0]) else argv[1:]
        verb = next((a for a in rest if not a.startswith("-")), None)
        return f"nnunet_anomaly {verb}" if verb else tool
    return tool


def _form(argv: list[str]) -> tuple[str, frozenset]:
    """(what runs, the flags it is given): the 'command form' shared by the docs and the demo."""
    key = exercise_key(argv) or ""
    if "Dataset" in key and ("dataset_conversion" in key):
        key = "conversion " + key.replace("/", ".").split(".")[-2 if key.endswith(".py") else -1]
    if key == "nnunet_anomaly.nnunet.planning":
        key += " " + next((a for a in argv[3:] if not a.startswith("-")), "")
    if _is_python(argv[0]):
        args = argv[3:] if argv[1] == "-m" else argv[2:]
    else:
        args = argv[1:]
    flags = frozenset(a.split("=")[0] for a in args if re.match(r"^--?[A-Za-z]", a))
    return key, flags


#: flags the demo adds for its own bookkeeping (display names, quiet logs, the sizes of its data sets)
DEMO_ONLY_FLAGS = {"--names", "--test-set", "--quiet", "--no-figures", "--num-training", "--base",
                   "--num-test-healthy", "--num-test-per-anomaly"}


def test_quickstart_mirrors_the_demo(tmp_path):
    """Each command form the demo runs is documented in quickstart.md with the same flags."""
    documented = {}
    for block in code_blocks(DOCS / "quickstart.md"):
        if block.language in SHELL_LANGUAGES:
            for _, argv in shell_commands(block):
                key, flags = _form(argv)
                documented.setdefault(key, []).append(flags)
    missing = []
    for argv in _demo_commands(tmp_path):
        key, flags = _form(argv)
        needed = flags - DEMO_ONLY_FLAGS
        if not any(needed <= doc_flags for doc_flags in documented.get(key, [])):
            missing.append(f"{key} {sorted(needed)}")
    assert not missing, "demo command forms not shown in quickstart.md: " + "; ".join(sorted(set(missing)))


#: documented tools the demo does not run, and the test that runs them for real
EXERCISED_ELSEWHERE = {
    "nnunet_anomaly export": "tests/test_export.py",
    "nnunet_anomaly crossval": "tests/test_nnunet_tools.py",
    "nnunet_anomaly demo": "tests/test_demo.py",
    "nnunet_anomaly": "tests/test_e2e_cli.py",
    "nnunet_anomaly.plugin": "tests/test_discovery.py",
    "make": "Makefile",
}


def test_documented_tools_are_exercised(tmp_path):
    """Each documented tool runs for real somewhere: in the demo or in a named test."""
    demo_keys = {exercise_key(c) for c in _demo_commands(tmp_path)}
    test_sources = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("test_*.py")
                    if p.name != Path(__file__).name}
    unexercised = []
    for param in _documented_commands():
        key = exercise_key(param.values[0])
        if key in demo_keys or key.startswith("nnUNetv2_"):
            continue  # nnU-Net's own tools: their flags are parse-checked above
        if key in EXERCISED_ELSEWHERE and (ROOT / EXERCISED_ELSEWHERE[key]).exists():
            continue
        if key.startswith("dataset_conversion/") or ".dataset_conversion." in key:
            stem = Path(key).stem if key.endswith(".py") else key.rsplit(".", 1)[-1]
            if any(stem in source for source in test_sources.values()):
                continue
        unexercised.append(f"{param.id} ({key})")
    assert not unexercised, "documented commands that neither the demo nor a test runs: " + "; ".join(unexercised)


# ============================================================================= (d) links
LINK = re.compile(r"\]\((?!https?://|mailto:|#)([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    broken = [target for target in LINK.findall(text) if not (path.parent / target).exists()]
    assert not broken, f"{path.relative_to(ROOT)} links to missing files: {broken}"


def test_index_links_every_document():
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if p.name != "README.md" and p.name not in index]
    assert not missing, f"documentation/README.md does not link {missing}"
