"""Every Python example in README.md runs, and prints what the README says it prints."""

from __future__ import annotations

import contextlib
import io
import re
import textwrap
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
#: (dedented: a block inside a list item is indented with it)
BLOCKS = [textwrap.dedent(block) for block in
          re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)]


def expected_output(code: str) -> list[str]:
    """What each ``print(...)`` line says it prints: its trailing ``# comment`` (up to a
    colon, which starts an explanation), or else the ``# ...`` lines right below it."""
    lines, out = code.splitlines(), []
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("print("):  # a loop's print too (its output below it)
            continue
        if "  # " in line:
            out.append(line.split("  # ", 1)[1].split(":")[0].strip())
            continue
        for follow in lines[i + 1:]:
            if not follow.startswith("# "):
                break
            out.append(follow[2:])
    return out


#: Printed outputs the README still shows but the code no longer prints, each with its reason
#: (none now); remove an entry once the README is updated.
STALE: dict[str, str] = {}


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index):
    code = BLOCKS[index]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(code, f"README.md example {index}", "exec"), {})
    printed = " ".join(buffer.getvalue().split())
    for expected in expected_output(code):
        if expected in STALE:
            continue
        assert " ".join(expected.split()) in printed, (expected, printed)


def test_there_are_examples():
    assert len(BLOCKS) >= 5


def test_a_loop_s_print_is_checked_too():
    """The outputs of a print inside a loop (the ``# ...`` lines below it) were not read."""
    code = "for n in (1, 2):\n    print(n)\n# 1\n# 2\nprint(3)  # 3\n"
    assert expected_output(code) == ["1", "2", "3"]
