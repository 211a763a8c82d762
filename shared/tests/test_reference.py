"""The Markdown reference tables: one row per topic, payload field and config key, and the generated-block rewriter."""

from __future__ import annotations

import re

import pytest
from chargebus.cli import main
from chargebus.config import FULL_CONFIG_SERVICE, TwcConfig
from chargebus.reference import (
    GENERATED,
    config_markdown,
    generated_blocks,
    payloads_markdown,
    refresh_generated,
    topics_markdown,
)
from chargebus.schema import PAYLOAD_MODELS, EvseState, Override
from chargebus.topics import TOPICS


def table_rows(markdown: str) -> list[list[str]]:
    """The data rows of every table in a Markdown text, split into cells (escaped pipes kept inside a cell)."""
    return [
        [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        for line in markdown.splitlines()
        if line.startswith("| ")
    ]


def section(markdown: str, title: str) -> str:
    """The text below a `#### title` heading, up to the next one."""
    parts = re.split(r"^#### (.+)$", markdown, flags=re.MULTILINE)
    found = dict(zip(parts[1::2], parts[2::2], strict=True))
    return found[title]


def test_topics_table_has_one_row_per_topic_in_order() -> None:
    rows = table_rows(topics_markdown("<p>"))
    assert rows[0] == ["topic", "dir", "retained", "payload", "who", "key"]
    assert [row[-1] for row in rows[1:]] == [f"`{spec.key}`" for spec in TOPICS]
    setpoint = rows[1 + [spec.key for spec in TOPICS].index("evse_setpoint")]
    assert setpoint[:3] == ["`<p>/evse/<evse_id>/setpoint`", "in", "yes"]


def test_topics_table_escapes_pipes_so_every_row_has_six_cells() -> None:
    rows = table_rows(topics_markdown("chargebus"))
    assert {len(row) for row in rows} == {6}
    mode = next(row for row in rows if row[0] == "`chargebus/allocator/mode/set`")
    assert mode[3] == r"off\|now\|solar\|minsolar"


def test_payload_tables_cover_every_model_and_field() -> None:
    markdown = payloads_markdown()
    for name, model in PAYLOAD_MODELS.items():
        fields = [row[0] for row in table_rows(section(markdown, name))[1:]]
        assert fields == [f"`{field.alias or key}`" for key, field in model.model_fields.items()], name
    nested = [row[0] for row in table_rows(section(markdown, "Override (nested)"))[1:]]
    assert nested == [f"`{key}`" for key in Override.model_fields]


def test_payload_rows_say_type_presence_and_limits() -> None:
    rows = {row[0]: row for row in table_rows(section(payloads_markdown(["EvseState"]), "EvseState"))}
    assert rows["`evse_id`"][2] == "required"
    assert rows["`evse_id`"][3].endswith(r"twc3-&lt;name&gt; \| ocpp-&lt;name&gt;[-&lt;connector&gt;]")  # no HTML tags
    assert rows["`vin`"][1:3] == ["string or null", "may be omitted (null)"]
    assert rows["`phases`"][3] == "≥ 1, ≤ 3"
    assert rows["`kind`"][1] == r"`twc2` \| `vehicle` \| `twc3` \| `ocpp`"
    assert rows["`updated_at`"][1] == "time"
    assert len(rows) == len(EvseState.model_fields) + 1  # + the header


def test_config_tables_cover_every_key_with_its_default() -> None:
    markdown = config_markdown()
    twc = {row[0]: row for row in table_rows(section(markdown, "`[twc]`"))[1:]}
    assert set(twc) == {f"`{key}`" for key in TwcConfig.model_fields}
    assert twc["`mode`"][1:3] == [r"`master` \| `listen`", '`"master"`']
    assert twc["`vin_hints`"][2] == "`{}`"
    circuits = {row[0]: row for row in table_rows(section(markdown, "`[[allocator.circuits]]`"))[1:]}
    assert circuits["`max_current_a`"][2:] == ["required", "> 0, ≤ 10 000"]
    assert '#### `[allocator.evses."<evse_id>"]`' in markdown
    assert '#### `[allocator.vehicles."<VIN>"]`' in markdown
    top = {row[0] for row in table_rows(section(markdown, "top level"))[1:]}
    assert top == {"`state_dir`"}
    assert FULL_CONFIG_SERVICE.model_fields  # the tables are built from the full config


def test_refresh_rewrites_only_the_generated_blocks() -> None:
    page = "intro\n<!-- generated: topics -->\nstale\n<!-- end: topics -->\noutro\n"
    refreshed = refresh_generated(page)
    assert refreshed.startswith("intro\n<!-- generated: topics -->\n\n| topic |")
    assert refreshed.endswith("\n\n<!-- end: topics -->\noutro\n")
    assert "stale" not in refreshed
    assert refresh_generated(refreshed) == refreshed
    assert generated_blocks(refreshed) == ["topics"]


def test_refresh_refuses_an_unknown_block() -> None:
    with pytest.raises(ValueError, match="unknown generated block 'colours'"):
        refresh_generated("<!-- generated: colours -->\n<!-- end: colours -->")


@pytest.mark.parametrize(
    ("argv", "block"),
    [
        (["topics", "--markdown", "--prefix", "<p>"], "topics"),
        (["schema", "--markdown"], "payloads"),
        (["config", "keys"], "config"),
    ],
)
def test_cli_prints_the_generated_tables(capsys: pytest.CaptureFixture[str], argv: list[str], block: str) -> None:
    assert main(argv) == 0
    assert capsys.readouterr().out == GENERATED[block]() + "\n"


def test_cli_schema_markdown_of_one_payload(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "Setpoint", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("#### Setpoint\n")
    assert "#### EvseState" not in out
