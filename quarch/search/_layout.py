"""Where a model's layers are: the decoder blocks, their attention and MLP parts, their weights.

`ModelLayout` is plain data read once from a torch model, so the search (and its worker
processes) can turn designs into `QuantConfig` rules and count weights without the model.

Parts: every linear layer under a block's attention module is `attn` (for MLA: the query,
latent KV and output projections), every one under its feed-forward module is `mlp` (for a
mixture-of-experts block: each routed expert's and the shared experts' projections, and any
gate that is an `nn.Linear`). Routed experts must be `nn.Linear` layers: transformers ≥ 5 fuses
them into 3-D parameters, which `quarch.models.unfuse_experts` turns back into linear layers
(the same function); a block with fused experts is refused rather than searched with its
experts left float.
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
_MLP_NAMES = ("mlp", "feed_forward", "ffn", "block_sparse_moe")


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


def _check_unfused(where: str, part: nn.Module) -> None:
    """Refuse weights a linear-layer quantizer would not see: 3-D (fused expert) parameters."""
    for name, p in part.named_parameters():
        if p.dim() >= 3:
            raise ValueError(
                f"{where}.{name}: fused expert weights {tuple(p.shape)} are not linear layers; "
                "call quarch.models.unfuse_experts(model) first"
            )


def model_layout(model: nn.Module) -> ModelLayout:
    """Read the layout of a decoder-only transformer (blocks of attention + MLP or experts).

    Raises:
        ValueError: no block list, a block whose linear layers are neither in an attention
            module nor in an MLP, or fused (3-D) expert weights (see the module doc).
    """
    prefix, blocks = _block_list(model)
    parts: dict[str, str] = {}
    layers = []
    for i, block in enumerate(blocks):
        infos = []
        for child_name, child in block.named_children():
            part = _part_of(child_name)
            if part is not None:
                _check_unfused(f"{prefix}.{i}.{child_name}", child)
            linears = [(n, m) for n, m in child.named_modules() if isinstance(m, nn.Linear)]
            if not linears:
                continue
            if part is None:
                raise ValueError(
                    f"{prefix}.{i}.{child_name}: linear layers outside an attention or MLP module "
                    f"({', '.join(_ATTN_NAMES + _MLP_NAMES)}); explore supports blocks of "
                    "attention and an MLP or experts"
                )
            if parts.setdefault(part, child_name) != child_name:
                raise ValueError(f"{prefix}.{i}: two modules for the {part} part")
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


def _attention_shapes(spec: ModelSpec) -> list[tuple[str, tuple[int, int]]]:
    h, heads = spec.hidden_size, spec.num_heads
    mla = spec.mla
    if mla is None:
        q, kv = heads * spec.head_dim, spec.num_kv_heads * spec.head_dim
        return [("q_proj", (q, h)), ("k_proj", (kv, h)), ("v_proj", (kv, h)), ("o_proj", (h, q))]
    if mla.q_lora_rank is None:
        out = [("q_proj", (heads * mla.qk_head_dim, h))]
    else:
        rank = mla.q_lora_rank
        out = [("q_a_proj", (rank, h)), ("q_b_proj", (heads * mla.qk_head_dim, rank))]
    up = heads * (mla.qk_nope_head_dim + mla.v_head_dim)
    out += [
        ("kv_a_proj_with_mqa", (mla.kv_cache_dim, h)),
        ("kv_b_proj", (up, mla.kv_lora_rank)),
        ("o_proj", (h, heads * mla.v_head_dim)),
    ]
    return out


def _mlp_shapes(spec: ModelSpec, prefix: str, width: int) -> list[tuple[str, tuple[int, int]]]:
    h = spec.hidden_size
    out = [(f"{prefix}up_proj", (width, h)), (f"{prefix}down_proj", (h, width))]
    if spec.gated_mlp:
        out.insert(0, (f"{prefix}gate_proj", (width, h)))
    return out


def _ffn_shapes(spec: ModelSpec, layer: int) -> list[tuple[str, tuple[int, int]]]:
    moe = spec.moe
    if moe is None or not moe.is_moe_layer(layer):
        return _mlp_shapes(spec, "", spec.intermediate_size)
    out = []
    for e in range(moe.num_experts):
        out += _mlp_shapes(spec, f"experts.{e}.", moe.expert_intermediate_size)
    if moe.num_shared_experts:
        # Qwen-MoE: one `shared_expert` and its sigmoid gate; DeepSeek: `shared_experts`
        name = "shared_expert." if moe.shared_expert_gate else "shared_experts."
        out += _mlp_shapes(spec, name, moe.num_shared_experts * moe.shared_intermediate_size)
        if moe.shared_expert_gate:
            out.append(("shared_expert_gate", (1, spec.hidden_size)))
    return out


def layout_from_spec(spec: ModelSpec) -> ModelLayout:
    """The layout an HF checkpoint of this spec has (`model.layers.{i}`, `self_attn.*` and
    `mlp.*` projections as transformers names them; routed experts unfused as
    `mlp.experts.{e}.{gate,up,down}_proj`, see the module doc), built without loading weights.
    Routers are not `nn.Linear` in transformers ≥ 5 and are left out."""
    attn = _attention_shapes(spec)
    layers = tuple(
        tuple(
            LinearInfo(name=f"model.layers.{i}.{mod}.{n}", part=part, shape=shape)
            for part, mod, items in ((ATTN, "self_attn", attn), (MLP, "mlp", _ffn_shapes(spec, i)))
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
