"""Prices of priced models, for ``max_cost_usd``: USD per million tokens, input and output.

The table holds list prices of a few common hosted models at the time of writing; they
change, so check your provider and override or extend it::

    from nbmagic.rlm.pricing import register_price
    register_price("my-model", input_per_million=0.5, output_per_million=1.5)
    RLM(..., max_cost_usd=0.20, prices={"other-model": (1.0, 4.0)})   # per RLM

A model name matches its exact entry, else the longest entry it starts with
(``gpt-4o-mini-2024-07-18`` is priced as ``gpt-4o-mini``). A run with a cost budget
refuses, before any call, a model that has no price: a budget that cannot be
measured is no budget. Local models cost nothing: price them ``(0, 0)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbmagic.errors import ConfigError
from nbmagic.llm.base import Usage

#: model name -> (USD per 1M prompt tokens, USD per 1M completion tokens)
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o3-mini": (1.10, 4.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
}


def check_prices(prices: Any, what: str = "prices") -> dict[str, tuple[float, float]]:
    """``{model: (input, output)}`` with non-negative numbers, or a :class:`ConfigError`."""
    if prices is None:
        return {}
    if not isinstance(prices, Mapping):
        raise ConfigError(f"{what} must be a dict {{model name: (input USD/1M tokens, output USD/1M tokens)}}.")
    out: dict[str, tuple[float, float]] = {}
    for name, pair in prices.items():
        ok = isinstance(name, str) and isinstance(pair, tuple | list) and len(pair) == 2 and all(
            isinstance(p, int | float) and not isinstance(p, bool) and p >= 0 for p in pair
        )
        if not ok:
            raise ConfigError(
                f"{what}[{name!r}] must be (input USD per 1M tokens, output USD per 1M tokens), got {pair!r}."
            )
        out[name] = (float(pair[0]), float(pair[1]))
    return out


def register_price(model: str, input_per_million: float, output_per_million: float) -> None:
    """Add or change a model's price for every RLM of this process."""
    PRICES.update(check_prices({model: (input_per_million, output_per_million)}, "register_price"))


def price_for(model: str, extra: Mapping[str, tuple[float, float]] | None = None) -> tuple[float, float] | None:
    """The model's price: exact name first, then the longest entry the name starts with."""
    table = {**PRICES, **(extra or {})}
    if model in table:
        return table[model]
    base = model.split("@", 1)[0].rsplit(":", 1)[-1].rsplit("/", 1)[-1]  # openai-compat:x@url, org/x
    if base in table:
        return table[base]
    starts = [k for k in table if base.startswith(k)]
    return table[max(starts, key=len)] if starts else None


def cost_usd(usage: Mapping[str, Usage], extra: Mapping[str, tuple[float, float]] | None = None) -> float | None:
    """What ``usage`` (per model name) cost; ``None`` if any model used is unpriced."""
    total = 0.0
    for model, u in usage.items():
        price = price_for(model, extra)
        if price is None:
            return None
        total += (u.prompt_tokens * price[0] + u.completion_tokens * price[1]) / 1_000_000
    return total
