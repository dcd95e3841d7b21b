"""The one truncation every engine uses."""

from __future__ import annotations

from nbmagic.text import truncate


def test_short_text_is_untouched() -> None:
    assert truncate("abc", 10) == "abc"
    assert truncate("abc", 0) == "abc"  # no limit


def test_head_and_tail_are_kept_with_the_count_of_what_was_dropped() -> None:
    text = "".join(str(i % 10) for i in range(1000))
    out = truncate(text, 100)
    assert out.startswith(text[:50]) and out.endswith(text[-50:])
    assert "(truncated, 900 chars omitted)" in out


def test_head_share_keeps_more_of_the_end() -> None:
    text = "a" * 500 + "Traceback ... ValueError: the cause"
    out = truncate(text, 90, head=1 / 3)
    assert out.startswith("a" * 30) and out.endswith("ValueError: the cause")
    assert f"(truncated, {len(text) - 90} chars omitted)" in out


def test_clip_keeps_the_head_and_says_how_much_was_cut():
    from nbmagic.text import clip

    assert clip("abcdef", 6) == "abcdef"
    assert clip("abcdef", 3) == "abc…" and clip("abcdef", 3, count=True) == "abc… [+3 chars]"
