"""Where a model's layers are: the decoder blocks, their attention and MLP parts, their weights.

`ModelLayout` is plain data read once from a torch model, so the search (and its worker
processes) can turn designs into `QuantConfig` rules and count weights without the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from quarch.models import ModelSpec

ATTN = "attn"
MLP = "mlp"
PARTS = (ATTN, MLP)

_ATTN_NAMES = ("self_attn", "attn", "attention", "self_attention")
_MLP_NAMES = ("mlp", "feed_forward", "ffn")


@dataclass(frozen=True, kw_only=True)
class LinearInfo:
    """One linear layer of a block: its full module name and weight shape `[out, in]`."""

    name: str
    part: str  # "attn" | "mlp"
    shape: tuple[int, int]

    @property
    def numel(self) -> int:
        return self.shape[0] * self.shape[1]


@dataclass(frozen=True, kw_only=True)
class ModelLayout:
    """The decoder blocks of a model.

    Fields:
        prefix: module path of the block list (`model.layers`).
        num_layers: blocks.
        part_modules: the child module name of each part (`{"attn": "self_attn", "mlp": "mlp"}`).
        linears: per layer, its linear layers.
    """

    prefix: str
    num_layers: int
    part_modules: tuple[tuple[str, str], ...]
    linears: tuple[tuple[LinearInfo, ...], ...]

    def module(self, part: str) -> str:
        return dict(self.part_modules)[part]

    def numel(self, layers: tuple[int, ...], part: str | None = None) -> int:
        """Weights of the linear layers of `layers` (one part, or both)."""
        return sum(
            li.numel for i in layers for li in self.linears[i] if part is None or li.part == part
        )


def _block_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    from quarch.models import decoder_blocks

    found = decoder_blocks(model)
    if found is None:
        raise ValueError("the model has no list of decoder blocks holding linear layers")
    return found


def _part_of(child: str) -> str | None:
    if child in _ATTN_NAMES:
        return ATTN
    if child in _MLP_NAMES:
        return MLP
    return None


def model_layout(model: nn.Module) -> ModelLayout:
    """Read the layout of a decoder-only transformer (LLaMA-style blocks: attention + MLP).

    Raises:
        ValueError: no block list, or a block whose linear layers are neither in an attention
            module nor in an MLP (for example mixture-of-experts blocks).
    """
    prefix, blocks = _block_list(model)
    parts: dict[str, str] = {}
    layers = []
    for i, block in enumerate(blocks):
        infos = []
        for child_name, child in block.named_children():
            linears = [(n, m) for n, m in child.named_modules() if isinstance(m, nn.Linear)]
            if not linears:
                continue
            part = _part_of(child_name)
            if part is None:
                raise ValueError(
                    f"{prefix}.{i}.{child_name}: linear layers outside an attention or MLP module "
                    f"({', '.join(_ATTN_NAMES + _MLP_NAMES)}); explore supports dense LLaMA-style "
                    "blocks"
                )
            if parts.setdefault(part, child_name) != child_name:
                raise ValueError(f"{prefix}.{i}: two modules for the {part} part")
            if part == MLP and any(isinstance(m, nn.ModuleList) for m in child.modules()):
                raise ValueError(f"{prefix}.{i}.{child_name}: mixture-of-experts is not supported")
            for sub, m in linears:
                shape = (int(m.weight.shape[0]), int(m.weight.shape[1]))
                infos.append(
                    LinearInfo(name=f"{prefix}.{i}.{child_name}.{sub}", part=part, shape=shape)
                )
        layers.append(tuple(infos))
    missing = [p for p in PARTS if p not in parts]
    if missing:
        raise ValueError(f"{prefix}: no {missing} module found in the blocks")
    return ModelLayout(
        prefix=prefix,
        num_layers=len(blocks),
        part_modules=tuple(sorted(parts.items())),
        linears=tuple(layers),
    )


def layout_from_spec(spec: ModelSpec) -> ModelLayout:
    """The layout an HF LLaMA-family checkpoint of this dense spec has (`model.layers.{i}`,
    `self_attn.{q,k,v,o}_proj`, `mlp.{gate,up,down}_proj`), built without loading weights."""
    if spec.moe is not None or spec.mla is not None:
        raise ValueError(f"{spec.name}: explore supports dense GQA models")
    h, d = spec.hidden_size, spec.head_dim
    q, kv, ffn = spec.num_heads * d, spec.num_kv_heads * d, spec.intermediate_size
    attn = (("q_proj", (q, h)), ("k_proj", (kv, h)), ("v_proj", (kv, h)), ("o_proj", (h, q)))
    mlp = [("up_proj", (ffn, h)), ("down_proj", (h, ffn))]
    if spec.gated_mlp:
        mlp.insert(0, ("gate_proj", (ffn, h)))
    layers = tuple(
        tuple(
            LinearInfo(name=f"model.layers.{i}.{mod}.{n}", part=part, shape=shape)
            for part, mod, items in ((ATTN, "self_attn", attn), (MLP, "mlp", mlp))
            for n, shape in items
        )
        for i in range(spec.num_layers)
    )
    return ModelLayout(
        prefix="model.layers",
        num_layers=spec.num_layers,
        part_modules=((ATTN, "self_attn"), (MLP, "mlp")),
        linears=layers,
    )
