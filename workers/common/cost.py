"""Per-model prices of the Azure AI models the workers call, in one place.

Prices are USD per 1,000 tokens (input, output). They are configuration, not truth: update
them here when the price list changes; unknown models cost 0 and are logged once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Price:
    input_per_1k: float
    output_per_1k: float


PRICES: dict[str, Price] = {
    "phi-4-multimodal": Price(input_per_1k=0.00008, output_per_1k=0.00032),
    "phi4": Price(input_per_1k=0.000125, output_per_1k=0.0005),
    "deepseek": Price(input_per_1k=0.00114, output_per_1k=0.00456),
    "deepseek-r1": Price(input_per_1k=0.00135, output_per_1k=0.0054),
}

_warned: set[str] = set()


def cost_usd(model: str, input_tokens: int, output_tokens: int) -> float:
    """Cost of one call; 0.0 for a model absent from the table."""
    price = PRICES.get(model.lower())
    if price is None:
        if model not in _warned:
            _warned.add(model)
            log.warning("no price for model %r; its cost is recorded as 0", model)
        return 0.0
    return round(
        input_tokens / 1000 * price.input_per_1k + output_tokens / 1000 * price.output_per_1k, 8
    )
