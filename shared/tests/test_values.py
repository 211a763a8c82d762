from __future__ import annotations

import math
from typing import Any

import pytest
from chargebus.values import lenient_number
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (7, 7.0),
        (7.5, 7.5),
        ("230.4", 230.4),
        (" 16 ", 16.0),
        ("", None),
        ("NaN", None),
        ("inf", None),
        (float("nan"), None),
        (True, None),
        (None, None),
        ([1], None),
        ({"a": 1}, None),
        (10**400, None),  # json.loads gives such an int; float() of it raises OverflowError
    ],
)
def test_lenient_number(value: Any, expected: float | None) -> None:
    assert lenient_number(value) == expected


@given(st.one_of(st.integers(), st.floats(), st.text(), st.booleans(), st.none(), st.lists(st.integers())))
def test_lenient_number_never_raises_and_is_finite(value: Any) -> None:
    number = lenient_number(value)
    assert number is None or math.isfinite(number)
