"""Every `§` reference in the tree names a page of `docs/` and a section that page has; nothing cites the old
design notes outside the repository.

A reference is a page followed by one or more sections: `docs/contract.md §5`, `docs/allocation.md §2, §6`,
`docs/contract.md §5–§6`. Outside `docs/` the page is always written with its folder (`docs/…`), so a reader knows
where to look; inside a page of `docs/`, a bare `§4` means that page's own section and a sibling is named without
the folder (`allocation.md §3`). A section exists when the page has a heading that starts with it (`## §4 …`,
`### §4.2 …`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SELF = Path(__file__).resolve()

SKIP_DIRS = frozenset(
    {".git", ".venv", ".tools", "__pycache__", ".mypy_cache", ".ruff_cache", ".hypothesis", ".demo", "node_modules"}
)
TEXT_SUFFIXES = frozenset({".py", ".md", ".toml", ".yml", ".yaml", ".sh", ".cfg", ".ini", ".txt", ".conf", ".env"})
TEXT_NAMES = frozenset({"Makefile", "Dockerfile"})

SECTION = re.compile(r"§(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#{1,6} §(\d+(?:\.\d+)*)\s", re.MULTILINE)
SEPARATOR = r"\s*(?:,|/|–|-|and|or|to)?\s*"
REFERENCE = re.compile(r"(?P<page>(?:docs/)?[\w.-]+\.md)[`)]?(?P<sections>(?:" + SEPARATOR + r"§\d+(?:\.\d+)*)+)")
#: Words that name the design notes this project once cited from outside the repository.
OUTSIDE = re.compile(r"handbook|/work/shared|twcmanager-notes|protocol notes|\bnotes §", re.IGNORECASE)


def text_files(root: Path) -> list[Path]:
    """The tracked-looking text files below `root`: sources, docs, configs and scripts."""
    found = []
    for path in sorted(root.rglob("*")):
        if any(part in SKIP_DIRS for part in path.relative_to(root).parts) or not path.is_file():
            continue
        in_scripts = path.parent.name == "scripts" and not path.suffix
        if path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES or path.name.startswith("Dockerfile") or in_scripts:
            found.append(path)
    return found


def sections_of(page: Path) -> set[str]:
    return set(HEADING.findall(page.read_text(encoding="utf-8")))


def reference_problems(path: Path, text: str, docs: Path) -> list[str]:
    """What is wrong with the `§` references of one file: each problem as `file:line: why`."""
    in_docs = path.parent == docs
    problems: list[str] = []
    covered: set[int] = set()

    def where(offset: int) -> str:
        return f"{path.name}:{text.count(chr(10), 0, offset) + 1}"

    for match in REFERENCE.finditer(text):
        page_name = match.group("page")
        sections = [(m.start() + match.start("sections"), m.group(1)) for m in SECTION.finditer(match["sections"])]
        covered.update(offset for offset, _section in sections)
        if in_docs:
            page = docs / page_name.removeprefix("docs/")
        elif page_name.startswith("docs/"):
            page = docs.parent / page_name
        else:
            problems.append(f"{where(match.start())}: {page_name} §…: name the page as docs/{page_name}")
            continue
        if not page.is_file():
            problems.append(f"{where(match.start())}: {page_name} is not a page of docs/")
            continue
        known = sections_of(page)
        problems += [f"{where(o)}: {page_name} has no §{s}" for o, s in sections if s not in known]
    headings = {m.start(1) for m in re.finditer(r"^#{1,6} (§)", text, re.MULTILINE)}
    own = set(HEADING.findall(text)) if in_docs else set()
    for match in SECTION.finditer(text):
        if match.start() in covered or match.start() in headings:
            continue
        if not in_docs:
            problems.append(f"{where(match.start())}: bare §{match.group(1)}: say which page of docs/ it is in")
        elif match.group(1) not in own:
            problems.append(f"{where(match.start())}: this page has no §{match.group(1)}")
    return problems


def test_every_section_reference_names_an_existing_page_and_section() -> None:
    problems = []
    for path in text_files(ROOT):
        if path == SELF:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if "§" in text:
            problems += [f"{path.relative_to(ROOT).parent}/{line}" for line in reference_problems(path, text, DOCS)]
    assert not problems, "\n".join(problems)


def test_nothing_cites_design_notes_outside_the_repository() -> None:
    found = []
    for path in text_files(ROOT):
        if path == SELF:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_scan_reads_code_docs_and_scripts() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in text_files(ROOT)}
    assert {"README.md", "docs/contract.md", "shared/src/chargebus/topics.py", "scripts/test", "Makefile"} <= names
    assert not any(name.startswith((".venv/", ".git/")) for name in names)


# -- the checker itself ------------------------------------------------------------------------------------------------


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "guide.md").write_text("# Guide\n\n## §1 One\n\nsee §2.1\n\n## §2 Two\n\n### §2.1 Two one\n")
    return folder


@pytest.mark.parametrize(
    "text",
    [
        "# see docs/guide.md §1",
        "# docs/guide.md §1, §2 and §2.1",
        "# (docs/guide.md §1–§2)",
        "# `docs/guide.md` §2",
        "no reference at all",
    ],
)
def test_good_references_pass(docs: Path, text: str) -> None:
    assert reference_problems(docs.parent / "code.py", text, docs) == []


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("# docs/guide.md §3", "docs/guide.md has no §3"),
        ("# docs/guide.md §1, §2.2", "docs/guide.md has no §2.2"),
        ("# docs/other.md §1", "docs/other.md is not a page of docs/"),
        ("# guide.md §1", "name the page as docs/guide.md"),
        ("# contract §5", "bare §5"),
        ("# as §2 says", "bare §2"),
    ],
)
def test_bad_references_are_found(docs: Path, text: str, why: str) -> None:
    problems = reference_problems(docs.parent / "code.py", text, docs)
    assert len(problems) == 1
    assert why in problems[0]


def test_inside_docs_a_bare_section_is_the_pages_own(docs: Path) -> None:
    page = docs / "guide.md"
    assert reference_problems(page, page.read_text(), docs) == []
    assert reference_problems(page, "## §1 One\n\nsee §9", docs) == ["guide.md:3: this page has no §9"]
    assert reference_problems(page, "## §1 One\n\nsee guide.md §1 and other.md §1", docs) == [
        "guide.md:3: other.md is not a page of docs/"
    ]
