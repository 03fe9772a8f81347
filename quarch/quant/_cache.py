"""`WeightCache`: round-to-nearest quantized weights kept for reuse across `apply_config` calls.

A search applies many configs to one model, and most give a layer a format some earlier config
already gave it. With a cache passed to `apply_config(..., weight_cache=cache)`, the RTN weight
of a (layer, format) is computed once and reused: exactly `quantize(fmt, W)` in the model's
dtype, what the `rtn` method computes. The cache belongs to one model whose float weights do not
change (it is keyed by layer name, not by weight values).
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from quarch.formats import Format, quantize

DEFAULT_CACHE_BYTES = 2 << 30
"""Memory a cache may hold by default (2 GiB)."""


class WeightCache:
    """Quantized (RTN) weights by (layer, format), least recently used dropped past a budget.

    A tensor whose values bfloat16 holds exactly (MX, fp8, fp4 grids with power-of-two scales)
    is kept in bfloat16 and widened on use, halving its memory without changing a bit.
    """

    def __init__(self, budget_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if not isinstance(budget_bytes, int) or budget_bytes < 0:
            raise ValueError(f"budget_bytes must be a non-negative integer, got {budget_bytes!r}")
        self.budget_bytes = budget_bytes
        self._items: OrderedDict[tuple[str, Format], torch.Tensor] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __contains__(self, key: tuple[str, Format]) -> bool:
        return key in self._items

    def get(self, name: str, fmt: Format, weight: torch.Tensor) -> torch.Tensor:
        """`quantize(fmt, weight)` in `weight`'s dtype, from the cache when layer `name` was
        quantized to `fmt` before.

        Raises:
            ValueError: the rounded weight holds NaN/Inf (it is not cached).
        """
        key = (name, fmt)
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
            self.hits += 1
            return found.to(weight.dtype)
        self.misses += 1
        q = quantize(fmt, weight.detach().to(torch.float32)).to(weight.dtype)
        if not bool(torch.isfinite(q).all()):
            raise ValueError(f"layer {name}: {fmt} rounding produced NaN/Inf weights")
        narrow = q.to(torch.bfloat16)
        stored = narrow if torch.equal(narrow.to(q.dtype), q) else q
        size = stored.numel() * stored.element_size()
        if size <= self.budget_bytes:
            self._items[key] = stored
            self.bytes += size
            while self.bytes > self.budget_bytes:
                _, old = self._items.popitem(last=False)
                self.bytes -= old.numel() * old.element_size()
        return q
