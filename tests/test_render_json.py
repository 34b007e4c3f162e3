"""``--json`` output written a piece at a time is exactly ``json.dumps(data, default=str)``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.cli import render

LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=6)  # non-ASCII, U+2028, quotes: escaped as json escapes them
    | st.just(datetime(2026, 11, 29, 1, 2, 3, tzinfo=UTC))  # default=str
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=4), inner, max_size=5),
    max_leaves=20,
)
KEYS = st.text(max_size=5) | st.integers(-5, 5) | st.booleans() | st.none()  # json converts the others


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=5) | VALUES, st.integers(0, 3), st.integers(1, 3))
def test_streamed_json_is_json_dumps(data, threshold, chunk):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        old = render.STREAM_ITEMS, render.STREAM_CHUNK
        render.STREAM_ITEMS, render.STREAM_CHUNK = threshold, chunk  # small: every list and dict streams
        try:
            render.emit_json(data)
        finally:
            render.STREAM_ITEMS, render.STREAM_CHUNK = old
    assert out.getvalue() == json.dumps(data, default=str) + "\n"


def test_a_large_run_is_written_in_pieces_of_about_a_megabyte(monkeypatch):
    writes: list[str] = []
    monkeypatch.setattr(render.click, "echo", lambda text, nl=True: writes.append(text))
    data = {"run_id": 1, "jobs": {f"j{i}": {"status": "SUCCESS", "exit_code": 0} for i in range(60_000)}}
    render.emit_json(data)
    assert "".join(writes) == json.dumps(data) + "\n"
    assert len(writes) > 1 and max(map(len, writes)) < 2 << 20
