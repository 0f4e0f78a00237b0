"""The shared UI helpers (studio.ui_common): the two number readers keep their different rules."""

from __future__ import annotations

import gradio as gr
import pytest

from backend.users import add_user
from backend.workspace import Workspace
from studio.ui_common import esc, int_or, int_or_none, no_change, status_badge, user_or_error


def test_int_or_none_is_strict() -> None:
    """Ids and page numbers: a whole number or nothing ("3.5" is no run 3)."""
    assert int_or_none("3") == 3
    assert int_or_none(3.0) == 3
    assert int_or_none(None) is None
    assert int_or_none("") is None
    assert int_or_none("3.5") is None
    assert int_or_none("abc") is None


def test_int_or_is_lenient_with_a_default() -> None:
    """Counts the browser measures: "3.0" is 3, anything unreadable the default."""
    assert int_or("3.0") == 3
    assert int_or(7.9) == 7
    assert int_or("1e400", 5) == 5  # OverflowError
    assert int_or(None, 100) == 100
    assert int_or("nan?", -1) == -1


def test_esc_badge_and_no_change() -> None:
    assert esc("<b>'x'</b>") == "&lt;b&gt;&#x27;x&#x27;&lt;/b&gt;"
    badge = status_badge("failed")
    assert 'class="run-status run-status-failed"' in badge and "✖ failed" in badge
    assert status_badge("<odd>").count("<odd>") == 0  # escaped, whatever the status says
    assert len(no_change(3)) == 3


def test_user_or_error_names_the_problem(ws: Workspace) -> None:
    add_user(ws, "ann", "annotator", "ann-password")

    class Request:  # what gradio hands a handler: only the name matters here
        username = "ann"

    assert user_or_error(ws, Request()).name == "ann"  # type: ignore[arg-type]
    Request.username = "nobody"
    with pytest.raises(gr.Error, match="Not allowed: you are not logged in"):
        user_or_error(ws, Request())  # type: ignore[arg-type]
