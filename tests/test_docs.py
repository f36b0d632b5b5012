"""The README and docs/ point only at what exists, and say what the code says.

A moved module or a renamed results file used to leave the README naming a path that was gone;
these checks make that a test failure instead of a reader's dead end.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
RESULTS = os.path.join(ROOT, "docs", "results.md")
RESULTS_COMMAND = os.path.join(ROOT, "bench", "results_docs.py")
README_MAX_LINES = 300

_LINK = re.compile(r"\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`\s]+)`")
# A backticked token is taken for a repository path when it starts where the repository's files do.
_REPO_PREFIXES = ("blocks/", "bench/", "tests/", "docs/", ".ci/")
_REPO_FILES = ("README.md", "pyproject.toml", "tox.ini")


def _pages() -> list:
    return [README, *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _without_code_blocks(text: str) -> str:
    """Prose only: a fenced block shows commands and output, whose paths are examples."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _anchors(text: str) -> set:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", _without_code_blocks(text), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def broken_links(page: str) -> list:
    text = _read(page)
    broken = []
    for target in _LINK.findall(_without_code_blocks(text)):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not os.path.exists(file):
            broken.append(target)
        elif anchor and file.endswith(".md") and anchor not in _anchors(_read(file)):
            broken.append(target)
    return broken


def missing_paths(page: str) -> list:
    """Backticked repository paths that match no file; `<name>` and `*` stand for any part."""
    missing = []
    for token in _CODE.findall(_without_code_blocks(_read(page))):
        token = token.rstrip(".,;:")
        if not (token.startswith(_REPO_PREFIXES) or token in _REPO_FILES):
            continue
        pattern = re.sub(r"<[^>]*>", "*", token)
        if not glob.glob(os.path.join(ROOT, pattern)):
            missing.append(token)
    return missing


@pytest.mark.parametrize("page", _pages(), ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_reaches_a_file_and_heading(page):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", _pages(), ids=lambda p: os.path.relpath(p, ROOT))
def test_every_backticked_repository_path_exists(page):
    assert missing_paths(page) == []


def test_the_readme_is_a_front_door():
    lines = _read(README).splitlines()
    assert len(lines) <= README_MAX_LINES
    # The two commands .ci/run runs, found the way it finds them.
    section = _read(README).split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [c for c in block.splitlines() if c.strip()] == [
        'python -m pip install -e ".[cpu,serve,test]" && python -m blocks pick',
        "python -m pytest",
    ]


def _headline_rows() -> list:
    text = _read(README)
    table = text.split("<!-- headline -->\n", 1)[1].split("<!-- /headline -->", 1)[0]
    return [row for row in table.splitlines() if row.startswith("| ") and "---" not in row]


def test_the_headline_rows_are_the_generated_results_rows():
    rows = _headline_rows()
    assert len(rows) >= 3
    results = _read(RESULTS).splitlines()
    assert [row for row in rows if row not in results] == []


def test_the_results_page_is_what_its_command_prints_from_the_committed_runs():
    """docs/results.md is generated (`python bench/results_docs.py > docs/results.md`): a number
    edited by hand, or a run committed or changed without regenerating, fails here."""
    out = subprocess.run(
        [sys.executable, RESULTS_COMMAND], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert _read(RESULTS) == out, (
        "docs/results.md is stale: run python bench/results_docs.py > docs/results.md"
    )


def test_the_readmes_variant_table_says_what_the_registry_says():
    import blocks

    text = _read(README)
    table = text.split("\n## The variants\n", 1)[1].strip().split("\n\n", 1)[0]
    wins = {}
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        wins[cells[0].strip("`")] = cells[-1]
    # The built-in variants, one module each (tests register others in the same registry).
    built_in = {
        os.path.basename(f)[:-3]
        for f in glob.glob(os.path.join(ROOT, "blocks", "variants", "*.py"))
    } - {"__init__"}
    assert sorted(wins) == sorted(built_in)
    assert wins == {name: blocks.get_variant(name).wins for name in built_in}
