"""`[history]`: where and how long history is kept."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    Field,
    field_validator,
)

from chargebus.config.common import OptionalStr, Section, Timezone


class HistoryConfig(Section):
    database: OptionalStr = None
    retention_days: Annotated[int, Field(ge=1, le=36_500)] = 730
    timezone: Timezone = ""
    gap_limit_s: Annotated[float, Field(gt=0)] = 1800

    @field_validator("database")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must be sqlite:////absolute/path.sqlite or postgresql://…")
        return value
