"""Markdown cells explain the analysis: a chat model's small talk to the user is dropped."""

from __future__ import annotations

from nbmagic.agent.markdown import clean_explanation


def test_small_talk_and_questions_to_the_user_are_dropped() -> None:
    # what the embedded model wrote above make run's first analysis cell
    assert clean_explanation("I'm ready to help. What's your request?", "Top 5 products by revenue") == ""
    kept = clean_explanation("Sure! We sum revenue per product and keep the five largest. Let me know if you need more.",
                             "Top 5 products by revenue")
    assert kept == "We sum revenue per product and keep the five largest."
