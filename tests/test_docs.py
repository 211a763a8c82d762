"""The project's own docs: the generated tables of docs/contract.md equal what the code prints, links resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from chargebus.reference import GENERATED, generated_blocks, refresh_generated

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CONTRACT = DOCS / "contract.md"
PAGES = sorted(DOCS.glob("*.md"))
READMES = [ROOT / "README.md", ROOT / "shared" / "README.md", ROOT / "sim" / "README.md"]
READMES += sorted(ROOT.glob("services/*/README.md"))
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_contract_embeds_every_generated_table() -> None:
    assert sorted(generated_blocks(CONTRACT.read_text(encoding="utf-8"))) == sorted(GENERATED)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_generated_tables_equal_the_code(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert refresh_generated(text) == text, f"{page.name} is out of date with the code: run scripts/gen-docs"


@pytest.mark.parametrize("page", [*PAGES, *READMES], ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    targets = LINK.findall(page.read_text(encoding="utf-8"))
    missing = [t for t in targets if "://" not in t and not t.startswith("mailto:") and not (page.parent / t).exists()]
    assert not missing


def test_the_pages_the_code_cites_exist() -> None:
    assert {page.name for page in PAGES} >= {
        "contract.md",
        "allocation.md",
        "twc-gen2-protocol.md",
        "architecture.md",
        "closed-loop-control.md",
    }
