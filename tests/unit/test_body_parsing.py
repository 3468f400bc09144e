"""Bodies refused before any command sees them: repeated keys, invalid UTF-8."""

from __future__ import annotations

import pytest

from interfaces.http.errors import ApiError
from interfaces.http.parsing import decode_body


@pytest.mark.parametrize(
    "raw",
    [b'{"a": 1, "a": 2}', b'{"u": "http://x", "o": {"k": 1, "k": 1}}', b'{"a": "\xff"}'],
)
def test_refused(raw: bytes) -> None:
    with pytest.raises(ApiError) as refused:
        decode_body(raw)
    assert refused.value.code == "invalid_request"


def test_colons_inside_strings_are_not_mistaken_for_keys() -> None:
    assert decode_body(b'{"u": "http://x:1", "t": ["12:00"]}') == {
        "u": "http://x:1",
        "t": ["12:00"],
    }
