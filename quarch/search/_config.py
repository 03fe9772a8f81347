"""A design as a `QuantConfig` (what `quarch quantize --config` applies), and its bits per weight.

Each group becomes a few rules whose patterns are regexes over the group's layer indices:
`re:^model\\.layers\\.(?:0|1|2)\\.self_attn\\.` for the attention linears of layers 0-2, and
`re:^model\\.layers\\.(?:0|1|2)\\.self_attn$` for their KV cache. Float choices get no rule (no
defaults are set, so anything no rule names stays float, embeddings and LM head included).
"""

from __future__ import annotations

import re
from functools import lru_cache

from quarch.quant import QuantConfig, Role, Rule
from quarch.search._layout import ATTN, MLP, PARTS
from quarch.search._space import Design, DesignSpace, WeightOption
from quarch.search._study import FLOAT


def _layers_regex(prefix: str, layers: tuple[int, ...]) -> str:
    alternatives = "|".join(str(i) for i in layers)
    return f"^{re.escape(prefix)}\\.(?:{alternatives})\\."


def rule_patterns(space: DesignSpace, layers: tuple[int, ...]) -> dict[str, str]:
    base = _layers_regex(space.layout.prefix, layers)
    attn, mlp = space.layout.module(ATTN), space.layout.module(MLP)
    return {
        ATTN: f"re:{base}{re.escape(attn)}\\.",
        MLP: f"re:{base}{re.escape(mlp)}\\.",
        "both": f"re:{base}(?:{re.escape(attn)}|{re.escape(mlp)})\\.",
        "kv": f"re:{base}{re.escape(attn)}$",
    }


def design_config(space: DesignSpace, design: Design, *, seed: int = 0) -> QuantConfig:
    """The `QuantConfig` of a design (see the module doc)."""
    rules: list[Rule] = []
    for g in space.groups:
        pats = rule_patterns(space, g.layers)
        targets = [(pats[p], p) for p in PARTS] if space.split_attn_mlp else [(pats["both"], ATTN)]
        for pattern, part in targets:
            opt = space.weight_option(design, g.name, part)
            if opt.format is None:
                continue
            rules.append(
                Rule(
                    pattern=pattern,
                    role=Role.WEIGHT,
                    format=str(opt.format),
                    method=opt.method.name,
                    params=dict(opt.method.params),
                )
            )
        act = design[f"a.{g.name}"]
        if act != FLOAT:
            rules.append(Rule(pattern=pats["both"], role=Role.INPUT, format=act))
        kv = design[f"kv.{g.name}"]
        if kv != FLOAT:
            rules.append(Rule(pattern=pats["kv"], role=Role.K_CACHE, format=kv))
            rules.append(Rule(pattern=pats["kv"], role=Role.V_CACHE, format=kv))
    return QuantConfig(rules=tuple(rules), seed=seed)


@lru_cache(maxsize=4096)
def option_bits(option: WeightOption, shape: tuple[int, int], serving_bits: float) -> float:
    """Storage bits of one `[out, in]` weight under an option: elements, scales, zero-points,
    and the extra weights its method declares (LQER's factors A `[in, r]`, B `[r, out]` at
    their format). Float: `serving_bits` per element (the serving dtype's)."""
    if option.format is None:
        return serving_bits * shape[0] * shape[1]
    bits = float(option.format.storage_bits(shape))
    overhead = option.overhead
    if overhead is not None:
        bits += overhead.weight_bytes(shape[1], shape[0]) * 8
    return bits


def bits_per_weight(space: DesignSpace, design: Design) -> float:
    """Mean storage bits per weight over the blocks' linear layers (embeddings and LM head are
    not searched and not counted, as in `QuantReport.bits_per_weight`)."""
    total_bits = 0.0
    total = 0
    serving = float(space.formats[FLOAT].bits_per_element)
    for g in space.groups:
        for part in PARTS:
            opt = space.weight_option(design, g.name, part)
            for layer in g.layers:
                for li in space.layout.linears[layer]:
                    if li.part != part:
                        continue
                    total_bits += option_bits(opt, li.shape, serving)
                    total += li.numel
    return total_bits / total
