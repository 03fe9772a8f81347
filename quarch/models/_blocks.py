"""Where a loaded torch model keeps its decoder blocks: one rule, used by `quant` and `search`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


def decoder_blocks(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The module path and the `ModuleList` of a model's transformer blocks, or None.

    The rule: the first `ModuleList` (outermost first) with as many entries as the model's
    `config.num_hidden_layers`; when the model has no such config or no list of that length, the
    longest `ModuleList` whose first entry holds an `nn.Linear` (first of equals).
    """
    from torch import nn

    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m)]
    count = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for name, blocks in lists:
        if count is not None and len(blocks) == count:
            return name, blocks
    best: tuple[str, nn.ModuleList] | None = None
    for name, blocks in lists:
        if not any(isinstance(m, nn.Linear) for m in blocks[0].modules()):
            continue
        if best is None or len(blocks) > len(best[1]):
            best = (name, blocks)
    return best
