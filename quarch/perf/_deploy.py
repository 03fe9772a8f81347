"""What an engine can load: fused layer groups and the kernels that exist per device architecture.

Two facts of a serving engine decide whether a mixed design can be served at all, before any
question of speed:

- **Fused groups** (`FusedGroup`): linear layers the engine loads as one packed GEMM (vLLM's
  `packed_modules_mapping`: `q_proj`, `k_proj`, `v_proj` -> `qkv_proj`; `gate_proj`, `up_proj`
  -> `gate_up_proj`). One packed layer has one quantization scheme, so every member must get
  the same weight format, method and input format; a checkpoint that mixes them is refused at
  load time.
- **Kernels** (`KernelSupport`): which (weight format class, activation format class) pairs an
  engine has a GEMM kernel for on which device architectures (vLLM: Marlin W4A16 on Ampere and
  later, FP8 W8A8 on Ada and later, NVFP4 W4A4 on Blackwell). A design whose pair has no
  kernel on its device cannot be served there.

Formats are matched by *class*, the property a kernel keys on (`kernel_class`): `float`
(served in 16 bits), `int4`/`int8` (integer elements of that width, any scaling), `fp8` (OCP
e4m3 elements; `mxfp8` with MX block scales), `nvfp4`, `mxfp4`, and each GGUF block type by
its name. Anything else is its own format string, which no table row names: no kernel.

Both live in the engine profiles (`quarch/perf/engines/*.yaml`, keys `fused_groups` and
`kernels`), every row with its source; an engine without a `kernels` table constrains nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quarch.formats import Format

FLOAT_CLASS = "float"
"""The class of a tensor left in floating point (the serving dtype)."""


@dataclass(frozen=True, kw_only=True)
class FusedGroup:
    """Linear layers an engine loads as one packed layer.

    Fields:
        name: the packed layer's name in the engine (`qkv_proj`).
        members: the leaf names of the checkpoint's layers it packs (`q_proj`, `k_proj`, ...).
        source: where the engine says so.
    """

    name: str
    members: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"fused group name must be a non-empty string, got {self.name!r}")
        if len(self.members) < 2 or not all(isinstance(m, str) and m for m in self.members):
            raise ValueError(
                f"fused group {self.name!r}: members must be two or more layer names, "
                f"got {list(self.members)!r}"
            )


@dataclass(frozen=True, kw_only=True)
class KernelSupport:
    """One kernel family: a (weight class, activation class) pair and where it runs.

    Fields:
        weight, act: format classes (see `kernel_class`).
        archs: device architectures it runs on (`ampere`, `hopper`, ...; as
            `quarch.perf.ARCHITECTURE` names them).
        kernel: the kernel's name in the engine (`Marlin W4A16`).
        source: where the engine documents it.
    """

    weight: str
    act: str
    archs: tuple[str, ...]
    kernel: str
    source: str


def _gguf_name(fmt: object) -> str | None:
    from quarch.formats import GgufBlock

    element = getattr(fmt, "element", None)
    return element.name if isinstance(element, GgufBlock) else None


@lru_cache(maxsize=512)
def kernel_class(fmt: str | Format | None) -> str:
    """The class a kernel table matches `fmt` by (see the module doc); None or a 16/32-bit
    float name is `float`."""
    from quarch.formats import Format, IntElement, Minifloat, Pow2Scale, Specials

    if fmt is None or (isinstance(fmt, str) and fmt in (FLOAT_CLASS, "bf16", "fp16", "fp32")):
        return FLOAT_CLASS
    f = fmt if isinstance(fmt, Format) else Format.parse(fmt)
    gguf = _gguf_name(f)
    if gguf is not None:
        return gguf
    el, sc = f.element, f.scaling
    if isinstance(el, IntElement):
        return f"int{el.bits}"
    if isinstance(el, Minifloat):
        shape = (el.exp_bits, el.man_bits, el.specials)
        if shape == (4, 3, Specials.FN):
            return "mxfp8" if isinstance(sc.scale_format, Pow2Scale) and sc.block else "fp8"
        if shape == (2, 1, Specials.FINITE) and sc.block:
            if sc.block == (16,) and sc.tensor_scale:
                return "nvfp4"
            if sc.block == (32,) and isinstance(sc.scale_format, Pow2Scale):
                return "mxfp4"
        if el.exp_bits + el.man_bits + 1 >= 16:
            return FLOAT_CLASS
    return str(f)


def find_kernel(
    table: Sequence[KernelSupport], weight: str | Format | None, act: str | None, arch: str
) -> KernelSupport | None:
    """The first row of `table` serving weights in `weight` with inputs in `act` on `arch`."""
    w, a = kernel_class(weight), kernel_class(act)
    for row in table:
        if row.weight == w and row.act == a and arch in row.archs:
            return row
    return None


def _text(origin: str, where: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{origin}: {where} must be a non-empty string, got {value!r}")
    return value


def _names(origin: str, where: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{origin}: {where} must be a non-empty list, got {value!r}")
    return tuple(_text(origin, f"{where}[{i}]", v) for i, v in enumerate(value))


def fused_groups_from_data(data: object, origin: str) -> tuple[FusedGroup, ...]:
    """`fused_groups:` of an engine profile: a list of `{name, members, source}`."""
    if not isinstance(data, list):
        raise ValueError(f"{origin}: fused_groups must be a list, got {data!r}")
    out = []
    for i, row in enumerate(data):
        where = f"fused_groups[{i}]"
        if not isinstance(row, dict) or set(row) != {"name", "members", "source"}:
            raise ValueError(f"{origin}: {where} must have exactly name, members, source")
        try:
            out.append(
                FusedGroup(
                    name=_text(origin, f"{where}.name", row["name"]),
                    members=_names(origin, f"{where}.members", row["members"]),
                    source=_text(origin, f"{where}.source", row["source"]),
                )
            )
        except ValueError as err:
            raise ValueError(f"{origin}: {where}: {err}") from None
    return tuple(out)


def kernels_from_data(data: object, origin: str) -> tuple[KernelSupport, ...]:
    """`kernels:` of an engine profile: a list of `{weight, act, archs, kernel, source}`
    (`weight` one class or a list of classes sharing the row)."""
    if not isinstance(data, list):
        raise ValueError(f"{origin}: kernels must be a list, got {data!r}")
    keys = {"weight", "act", "archs", "kernel", "source"}
    out = []
    for i, row in enumerate(data):
        where = f"kernels[{i}]"
        if not isinstance(row, dict) or set(row) != keys:
            raise ValueError(f"{origin}: {where} must have exactly {sorted(keys)}")
        weights = row["weight"]
        if isinstance(weights, str):
            weights = [weights]
        for w in _names(origin, f"{where}.weight", weights):
            out.append(
                KernelSupport(
                    weight=w,
                    act=_text(origin, f"{where}.act", row["act"]),
                    archs=_names(origin, f"{where}.archs", row["archs"]),
                    kernel=_text(origin, f"{where}.kernel", row["kernel"]),
                    source=_text(origin, f"{where}.source", row["source"]),
                )
            )
    return tuple(out)
