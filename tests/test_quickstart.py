"""documentation/quickstart.md runs as written: its "by hand" commands, end to end, as a user runs them.

The shell blocks of the section "The same pipeline, by hand" are run in order, as one bash script, in
a temporary folder outside the repository, with the installed commands (``python`` is the project's
interpreter, so ``python -m ...`` finds only what is installed; no path into a clone works). Whatever
the document says is what runs: a broken or renamed command, a wrong flag or a missing step fails
this test. Only the size changes, through the substitutions in :data:`CI_SIZE` (each one optional, so
the test follows the document when its commands change): the tiny CI trainer instead of the demo's,
and fewer demo cases. Then the outputs the document promises must exist.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_documentation import DOCS, SHELL_LANGUAGES, code_blocks

pytestmark = pytest.mark.slow

SECTION = "## The same pipeline, by hand"
#: (pattern, replacement): the tiny CI configuration; a pattern that does not occur is simply not applied
CI_SIZE = [
    (r"\bAnomalyTaskTrainer_demo\b", "AnomalyTaskTrainer_ci"),  # 1 epoch x 5 iterations per fold
    (r"(nnunet_anomaly\.dataset_conversion\.Dataset990_MNIDemo\b[^\n]*)",
     r"\1 --num-training 5 --num-test-healthy 1 --num-test-per-anomaly 1"),
]


def quickstart_script(markdown: Path = DOCS / "quickstart.md") -> str:
    """The shell blocks of the "by hand" section, in document order, as one script."""
    text = markdown.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    first_line = text.count("\n", 0, start) + 1
    last_line = text.count("\n", 0, end if end >= 0 else len(text)) + 1
    blocks = [b for b in code_blocks(markdown) if b.language in SHELL_LANGUAGES and first_line <= b.line <= last_line]
    assert blocks, f"no shell block in the section {SECTION!r} of {markdown}"
    return "\n".join(b.code for b in blocks)


def ci_sized(script: str) -> str:
    for pattern, replacement in CI_SIZE:
        script = re.sub(pattern, replacement, script)
    return script


def test_the_section_is_found_and_uses_only_installed_commands():
    script = quickstart_script()
    assert "nnUNetv2_train" in script and "nnunet_anomaly evaluate" in script
    # a user who installed the package has no dataset_conversion/ folder: only `python -m` works
    assert not re.search(r"python3?\s+(?!-m\b)\S*dataset_conversion/", script), script


def test_quickstart_runs_end_to_end(tmp_path):
    script = ci_sized(quickstart_script())
    work = tmp_path / "user"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("nnUNet_", "nnunet_anomaly"))
           or k == "nnunet_anomaly_brains"}  # the stand-in brain cache (conftest): never a download
    bin_dir = str(Path(sys.executable).parent)
    # only what a CI machine sets anyway: a small process pool, no torch.compile, a headless plot backend
    env.update(PATH=bin_dir + os.pathsep + env.get("PATH", ""), MPLBACKEND="Agg", nnUNet_def_n_proc="2",
               nnUNet_compile="false", PYTHONDONTWRITEBYTECODE="1")
    (work / "quickstart.sh").write_text("set -euo pipefail\nset -x\n" + script)
    completed = subprocess.run(["bash", "quickstart.sh"], cwd=work, env=env, capture_output=True, text=True,
                               timeout=3600)
    log = (completed.stdout + completed.stderr)[-6000:]
    assert completed.returncode == 0, f"the quickstart failed as written (CI-sized):\n{log}"
    outputs = sorted(p.relative_to(work).as_posix() for p in work.rglob("results.json"))
    assert outputs, f"no evaluation results.json under {work}:\n{log}"
    for found in work.rglob("results.json"):
        assert (found.parent / "table.md").is_file() and (found.parent / "per_case.csv").is_file()
