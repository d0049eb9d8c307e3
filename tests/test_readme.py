"""The README's promises: its example runs as written, and CI runs its test command verbatim."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _block_after(marker: str) -> str:
    match = re.search(re.escape(marker) + r"\s*```[a-z]*\n(.*?)```", README, re.S)
    assert match, f"no code block after {marker} in README.md"
    return match.group(1)


def test_readme_example_runs_as_written(tmp_path: Path) -> None:
    code = _block_after("<!-- readme-example -->")
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    bundle, deal, course, propensity = proc.stdout.split()
    assert bundle == f"{deal}+{course}"
    assert 0.0 < float(propensity) <= 1.0
    assert (tmp_path / "engine.bandit").stat().st_size > 0


def test_ci_runs_the_readme_test_command() -> None:
    command = _block_after("<!-- test-command -->").strip()
    proc = subprocess.run(
        [str(ROOT / ".ci" / "run"), "--print"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == command
