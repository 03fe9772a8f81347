"""The GGUF (llama.cpp) block quantization types quarch emulates: sizes and element layouts.

Block sizes and bytes per block are those of the `block_*` structs of ggml-common.h in
llama.cpp (ggml-org/llama.cpp, ggml/src/ggml-common.h), the same numbers the `gguf` Python
package lists in `GGML_QUANT_SIZES`. Legacy types hold 32 elements per block, K-quants 256
(QK_K) in a super-block of 16 or 8 sub-blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GROUP_MAX_EPS = 1e-15  # ggml-quants.c: a (sub-)block with max |x| below this quantizes to zero


@dataclass(frozen=True, kw_only=True)
class GgufType:
    """One GGUF block type: `block` elements stored in `type_bytes` bytes."""

    name: str  # quarch's format string (lower case), e.g. "q4_k"
    ggml_name: str  # llama.cpp's name, e.g. "Q4_K"
    block: int
    type_bytes: int
    code_bits: int  # bits of one stored element code
    sub_block: int  # elements per scale (the block itself for legacy types)

    @property
    def bits_per_element(self) -> float:
        return self.type_bytes * 8 / self.block


def _t(name: str, block: int, type_bytes: int, code_bits: int, sub_block: int) -> GgufType:
    return GgufType(
        name=name.lower(),
        ggml_name=name,
        block=block,
        type_bytes=type_bytes,
        code_bits=code_bits,
        sub_block=sub_block,
    )


GGUF_TYPES: dict[str, GgufType] = {
    t.name: t
    for t in (
        _t("Q8_0", 32, 34, 8, 32),  # fp16 d, int8 qs[32]
        _t("Q4_0", 32, 18, 4, 32),  # fp16 d, nibbles qs[16]
        _t("Q4_1", 32, 20, 4, 32),  # fp16 d, fp16 m, qs[16]
        _t("Q5_0", 32, 22, 5, 32),  # fp16 d, qh[4] (5th bits), qs[16]
        _t("Q5_1", 32, 24, 5, 32),  # fp16 d, fp16 m, qh[4], qs[16]
        _t("IQ4_NL", 32, 18, 4, 32),  # fp16 d, qs[16]: indices into a 16-value table
        _t("Q2_K", 256, 84, 2, 16),  # scales[16] (4-bit scale | 4-bit min), qs[64], d, dmin
        _t("Q3_K", 256, 110, 3, 16),  # hmask[32], qs[64], scales[12] (6-bit), d
        _t("Q4_K", 256, 144, 4, 32),  # d, dmin, scales[12] (6-bit scales and mins), qs[128]
        _t("Q5_K", 256, 176, 5, 32),  # d, dmin, scales[12], qh[32], qs[128]
        _t("Q6_K", 256, 210, 6, 16),  # ql[128], qh[64], int8 scales[16], d
    )
}


@dataclass(frozen=True, kw_only=True)
class GgufCodes:
    """One tensor's blocks as stored, before byte packing (blocks along the last dim).

    q: int32 [..., nb, block] stored element codes (unsigned, except Q8_0's int8).
    d: float16 [..., nb] block (super-block) scale; dmin: float16 [..., nb] minimum (Q4_1, Q5_1:
    the block minimum m; K-quants: the super-block scale of the minimums) or None.
    sc, mn: int32 [..., nb, sub-blocks] quantized sub-block scales and minimums (K-quants) or None.
    """

    q: torch.Tensor
    d: torch.Tensor
    dmin: torch.Tensor | None = None
    sc: torch.Tensor | None = None
    mn: torch.Tensor | None = None

    def cpu(self) -> GgufCodes:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.cpu()

        return GgufCodes(
            q=self.q.cpu(), d=self.d.cpu(), dmin=move(self.dmin), sc=move(self.sc), mn=move(self.mn)
        )


def sequential_sum(v: torch.Tensor) -> torch.Tensor:
    """Sum over the last dim left to right in float32, as a C loop `s += v[j]` does."""
    acc = torch.zeros(v.shape[:-1], dtype=torch.float32, device=v.device)
    for j in range(v.shape[-1]):
        acc = acc + v[..., j]
    return acc
