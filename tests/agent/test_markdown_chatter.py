"""Markdown cells explain the analysis: a chat model's small talk to the user is dropped."""

from __future__ import annotations

from nbmagic.agent.markdown import clean_explanation


def test_small_talk_and_questions_to_the_user_are_dropped() -> None:
    # what the embedded model wrote above make run's first analysis cell
    assert clean_explanation("I'm ready to help. What's your request?", "Top 5 products by revenue") == ""
    kept = clean_explanation("Sure! We sum revenue per product and keep the five largest. Let me know if you need more.",
                             "Top 5 products by revenue")
    assert kept == "We sum revenue per product and keep the five largest."


def test_a_step_heading_echoed_from_the_prompt_is_dropped() -> None:
    # the 0.5B coder wrote "Step 3: Monthly revenue trend plot" as the step's whole explanation
    prompt = "Step 3 of 3: Monthly revenue trend plot\nThis cell does only this part of the request: a monthly plot"
    assert clean_explanation("Step 3: Monthly revenue trend plot", prompt) == ""
    assert clean_explanation("Step 3: Monthly revenue trend plot\nWe sum revenue per month and draw it as a line.",
                             prompt) == "We sum revenue per month and draw it as a line."


def test_a_sentence_that_only_introduces_the_code_is_dropped() -> None:
    # the embedded model's whole explanation above make run's top-5 cell
    assert clean_explanation("The cell is:", "Top 5 products by revenue") == ""
    assert clean_explanation("Here is the code:\nWe add up revenue per product.", "Top 5") == "We add up revenue per product."
