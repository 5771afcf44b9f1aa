"""Every Python block of the docs pages and the README runs on this backend.

Each page runs in a fresh process, its blocks one after another in one
namespace (a later block may use what an earlier one defined), in a temporary
folder. A block that cannot run here carries a marker on the line above its
fence, with the reason, which the test reports as its skip reason:

    <!-- docs-test: tensorflow (why) -->   runs on the TensorFlow backend only
    <!-- docs-test: skip (why) -->         never runs (a download, hours of training)

docs/architecture.md's blocks run in tests/test_architecture.py. Docstring
examples run as doctests (pytest's --doctest-modules).
"""

import dataclasses
import os
import pathlib
import re
import subprocess
import sys

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [
    page
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    # architecture.md's blocks run in tests/test_architecture.py.
    if page.name != "architecture.md" and "```python" in page.read_text()
]
MARKER = re.compile(r"<!-- docs-test: (tensorflow|skip) \((.+?)\) -->")
FENCE = re.compile(r"^```python\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)


@dataclasses.dataclass
class Block:
    line: int
    code: str
    marker: str | None
    reason: str | None


def blocks(page):
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marked = MARKER.fullmatch(before.strip())
        found.append(
            Block(
                line=text.count("\n", 0, match.start()) + 2,
                code=match.group(1),
                marker=marked and marked.group(1),
                reason=marked and marked.group(2),
            )
        )
    return found


def test_markers_are_well_formed_and_few():
    for page in PAGES:
        text = page.read_text()
        assert text.count("<!-- docs-test") == len(MARKER.findall(text)), page.name
    marked = [b for page in PAGES for b in blocks(page) if b.marker]
    total = sum(len(blocks(page)) for page in PAGES)
    # Keep the exceptions few: most blocks must run on every backend.
    assert len(marked) <= total // 4, [b.reason for b in marked]


RUNNER = """
import sys

path, *rest = sys.argv[1:]
for line, code_file in zip(rest[::2], rest[1::2]):
    with open(code_file) as file:
        code = file.read()
    exec(compile(code, f"{path}, block at line {line}", "exec"), globals())
"""


def runs_here(block):
    if block.marker == "tensorflow":
        return keras.backend.backend() == "tensorflow"
    return block.marker != "skip"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_page_code_runs(page, tmp_path):
    runnable = [block for block in blocks(page) if runs_here(block)]
    if not runnable:
        pytest.skip(f"{page.name} has no Python block to run on this backend")
    arguments = []
    for index, block in enumerate(runnable):
        code_file = tmp_path / f"block_{index}.py"
        code_file.write_text(block.code)
        arguments += [str(block.line), str(code_file)]
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, page.name, *arguments],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"},
    )
    assert result.returncode == 0, result.stderr[-4000:]


NOT_RUN_HERE = [
    pytest.param(block, id=f"{page.name}:{block.line}")
    for page in PAGES
    for block in blocks(page)
    if not runs_here(block)
]


@pytest.mark.parametrize("block", NOT_RUN_HERE)
def test_blocks_not_run_here_say_why(block):
    # Reported, not hidden: `pytest -ra` lists each with its marker's reason.
    pytest.skip(f"docs-test: {block.marker}: {block.reason}")
