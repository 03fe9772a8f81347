"""The format string grammar (docs/formats.md): parse and print, round-tripping exactly."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from quarch._checks import EXCERPT_CHARS, excerpt
from quarch.formats._elements import NF4, TERNARY, codebook_from_values
from quarch.formats._gguf_types import GGUF_TYPES
from quarch.formats._spec import (
    POW2_RULES,
    Codebook,
    Element,
    Format,
    GgufBlock,
    IntElement,
    IntGrid,
    Minifloat,
    Pow2Scale,
    PowerOfTwo,
    Rounding,
    RoundMode,
    ScaleFormat,
    ScaleRule,
    Scaling,
    ScalingKind,
    Specials,
    Ternary,
)

GRAMMAR_HELP = (
    "valid forms: a preset (fp32, bf16, fp16, fp8_e4m3, fp8_e5m2, fp6_e3m2, fp6_e2m3, fp4_e2m1, "
    "mxfp8_e4m3, mxfp8_e5m2, mxfp6_e3m2, mxfp6_e2m3, mxfp4, mxint8, nvfp4, int8, int4, int3, "
    "int2, nf4, ternary, bfp{K}; GGUF block types "
    + ", ".join(GGUF_TYPES)
    + ", which take no modifiers) or an element "
    "(e{X}m{Y}[fn|fnuz|fin], int{K}, pot{K}, ternary, nf4, cb[v0,v1,...]) followed by "
    "_-separated modifiers: bias{B} nosub sat full asym | "
    "t c raw g{k} b{r}x{c} a{axis} | s{scale format: fp32 bf16 fp16 e8m0 e4m3 ue5m3 eXmY} | "
    "floor ceil near amax mse mean | ts | rne away rz rd ru sr{bits} seed{n} (see docs/formats.md)"
)

_MINIFLOAT = re.compile(r"e(\d+)m(\d+)(fn|fnuz|fin)?")
_SPECIALS = {None: Specials.IEEE, "fn": Specials.FN, "fnuz": Specials.FNUZ, "fin": Specials.FINITE}


# Bounds on every number a format string can carry, checked on the digits before any arithmetic
# (an exponent width of ten digits once built 2**9999999999 before it was refused). The widths
# are those the float32 emulation can represent; the rest keep shapes, seeds and tables within
# what torch accepts (int64 seeds, int32-sized dims, an 8-bit codebook index).
FIELD_LIMITS: dict[str, tuple[int, int]] = {
    "exponent width": (1, 8),  # float32 has 8 exponent bits
    "mantissa width": (0, 23),  # ... and 23 mantissa bits
    "integer bits": (2, 16),
    "power-of-two bits": (2, 8),
    "exponent bias": (-1024, 1024),  # any bias inside float32 lies well within this
    "group size": (1, 2**31 - 1),
    "2-D block size": (1, 2**31 - 1),
    "axis": (-64, 63),  # torch tensors have at most 64 dims
    "random bits": (1, 24),  # a float32 significand has 24 bits
    "seed": (0, 2**32 - 1),
}
MAX_FORMAT_CHARS = 4096
MAX_CODEBOOK_VALUES = 256  # an 8-bit index
_MAX_DIGITS = 12  # more digits than any limit above: refused before int() runs


class _Bad(ValueError):
    pass


def _fail(text: str, why: str) -> _Bad:
    return _Bad(f"invalid format string {excerpt(text)}: {why}; {GRAMMAR_HELP}")


def _field(text: str, tok: str, name: str, digits: str) -> int:
    """The integer `digits` of token `tok`, refused unless within FIELD_LIMITS[name]."""
    lo, hi = FIELD_LIMITS[name]
    value = int(digits) if len(digits.lstrip("-")) <= _MAX_DIGITS else None
    if value is None or not lo <= value <= hi:
        got = digits if len(digits) <= EXCERPT_CHARS else excerpt(digits)
        raise _fail(text, f"{excerpt(tok)}: {name} must be in {lo}..{hi}, got {got}")
    return value


def minifloat(e: int, m: int, specials: Specials = Specials.IEEE, **kw: Any) -> Minifloat:
    bias = kw.pop("bias", None)
    if bias is None:
        bias = Minifloat.default_bias(e, specials)
    return Minifloat(exp_bits=e, man_bits=m, bias=bias, specials=specials, **kw)


def _check_minifloat(text: str, mf: Minifloat) -> None:
    if not 1 <= mf.exp_bits <= 8 or not 0 <= mf.man_bits <= 23:
        raise _fail(text, f"minifloat e{mf.exp_bits}m{mf.man_bits} needs 1 ≤ X ≤ 8, 0 ≤ Y ≤ 23")
    if mf.specials is Specials.IEEE and mf.exp_bits < 2:
        raise _fail(text, "an IEEE-style minifloat needs at least 2 exponent bits")
    if mf.emax > 127 or mf.emin - mf.man_bits < -149:
        raise _fail(text, f"bias {mf.bias} puts e{mf.exp_bits}m{mf.man_bits} outside float32")


def _parse_element(text: str, tok: str) -> Element:
    if m := _MINIFLOAT.fullmatch(tok):
        e = _field(text, tok, "exponent width", m[1])
        mf = minifloat(e, _field(text, tok, "mantissa width", m[2]), _SPECIALS[m[3]])
        _check_minifloat(text, mf)
        return mf
    if m := re.fullmatch(r"(int|pot|bfp)(\d+)", tok):
        if m[1] == "pot":
            return PowerOfTwo(bits=_field(text, tok, "power-of-two bits", m[2]))
        return IntElement(bits=_field(text, tok, "integer bits", m[2]))
    if tok == "ternary":
        return TERNARY
    if tok == "nf4":
        return NF4
    if m := re.fullmatch(r"cb\[(.*)\]", tok):
        return _parse_codebook(text, tok, m[1])
    raise _fail(text, f"unknown element {excerpt(tok)}")


def _parse_codebook(text: str, tok: str, body: str) -> Codebook:
    raw = [v for v in body.split(",") if v.strip()]
    if len(raw) > MAX_CODEBOOK_VALUES:
        raise _fail(text, f"a codebook takes at most {MAX_CODEBOOK_VALUES} values, got {len(raw)}")
    vals = []
    for v in raw:
        try:
            vals.append(float(v))
        except ValueError:
            why = f"bad codebook {excerpt(tok)}: {excerpt(v.strip())} is not a number"
            raise _fail(text, why) from None
    try:
        return codebook_from_values(tuple(vals))
    except ValueError as e:
        raise _fail(text, f"bad codebook {excerpt(tok)}: {e}") from None


def _parse_scale_format(text: str, tok: str) -> ScaleFormat:
    named: dict[str, ScaleFormat] = {
        "fp32": minifloat(8, 23),
        "bf16": minifloat(8, 7),
        "fp16": minifloat(5, 10),
        "e8m0": Pow2Scale(),
        "e4m3": minifloat(4, 3, Specials.FN),
        "ue5m3": minifloat(5, 3, Specials.FINITE, signed=False),
    }
    if tok in named:
        return named[tok]
    if _MINIFLOAT.fullmatch(tok):
        el = _parse_element(text, tok)
        assert isinstance(el, Minifloat)
        return el
    raise _fail(text, f"unknown scale format {excerpt(tok)} (in token {excerpt('s' + tok)})")


def default_scaling_kind(el: Element) -> tuple[ScalingKind, tuple[int, ...]]:
    match el:
        case Minifloat():
            return ScalingKind.NONE, ()
        case Ternary():
            return ScalingKind.TENSOR, ()
        case Codebook(name="nf4"):
            return ScalingKind.GROUP, (64,)
        case _:
            return ScalingKind.CHANNEL, ()


def default_rule(el: Element, sf: ScaleFormat) -> ScaleRule:
    if isinstance(sf, Pow2Scale):
        return ScaleRule.FLOOR
    return ScaleRule.MEAN if isinstance(el, Ternary) else ScaleRule.AMAX


_SIMPLE = {
    "t": ("kind", ScalingKind.TENSOR),
    "c": ("kind", ScalingKind.CHANNEL),
    "raw": ("kind", ScalingKind.NONE),
    "nosub": ("nosub", True),
    "sat": ("sat", True),
    "full": ("grid", IntGrid.FULL),
    "asym": ("grid", IntGrid.ASYM),
    "ts": ("ts", True),
    "rne": ("mode", RoundMode.RNE),
    "away": ("mode", RoundMode.AWAY),
    "rz": ("mode", RoundMode.RZ),
    "rd": ("mode", RoundMode.RD),
    "ru": ("mode", RoundMode.RU),
    **{r.value: ("rule", r) for r in ScaleRule},
}


def _parse_modifier(text: str, tok: str, mods: dict[str, Any]) -> None:
    key_val: tuple[str, Any]
    if tok in _SIMPLE:
        key_val = _SIMPLE[tok]
    elif m := re.fullmatch(r"g(-?\d+)", tok):
        mods["block"] = (_field(text, tok, "group size", m[1]),)
        key_val = ("kind", ScalingKind.GROUP)
    elif m := re.fullmatch(r"b(-?\d+)x(-?\d+)", tok):
        rc = (_field(text, tok, "2-D block size", m[1]), _field(text, tok, "2-D block size", m[2]))
        mods["block"] = rc
        key_val = ("kind", ScalingKind.BLOCK2D)
    elif m := re.fullmatch(r"a(-?\d+)", tok):
        key_val = ("axis", _field(text, tok, "axis", m[1]))
    elif m := re.fullmatch(r"bias(-?\d+)", tok):
        key_val = ("bias", _field(text, tok, "exponent bias", m[1]))
    elif m := re.fullmatch(r"sr(\d+)", tok):
        mods["sr_bits"] = _field(text, tok, "random bits", m[1])
        key_val = ("mode", RoundMode.SR)
    elif m := re.fullmatch(r"seed(\d+)", tok):
        key_val = ("seed", _field(text, tok, "seed", m[1]))
    elif tok.startswith("s") and len(tok) > 1:
        key_val = ("sf", _parse_scale_format(text, tok[1:]))
    else:
        raise _fail(text, f"unknown modifier {excerpt(tok)}")
    key, val = key_val
    if tok[0] in "gb" and "block" in mods and "kind" in mods:
        first = excerpt(mods["tokens"]["kind"])
        raise _fail(text, f"conflicting scaling modifiers {first} and {excerpt(tok)}")
    mods.setdefault("tokens", {})[key] = tok
    if key in mods and mods[key] != val:
        raise _fail(text, f"conflicting modifiers for {key}: {mods[key]} and {excerpt(tok)}")
    mods[key] = val


def parse_format(text: str) -> Format:
    if not isinstance(text, str):
        raise TypeError(f"a format string must be str, got {type(text).__name__}")
    if len(text) > MAX_FORMAT_CHARS:
        raise _fail(text, f"longer than {MAX_FORMAT_CHARS} characters ({len(text)})")
    s = text.strip().lower()
    if not s:
        raise _fail(text, "empty string")
    from quarch.formats._presets import GGUF_FORMATS, PRESETS

    toks = s.split("_")
    if any(t == "" for t in toks):
        raise _fail(text, "empty token (doubled or trailing '_')")
    if len(toks) >= 2 and "_".join(toks[:2]) in GGUF_FORMATS:
        if len(toks) > 2:
            why = f"GGUF block type {toks[0]}_{toks[1]} takes no modifiers, got {excerpt(s)}"
            raise _fail(text, why)
        return GGUF_FORMATS["_".join(toks)]
    base: Format | None = None
    for n in (2, 1):
        if len(toks) >= n and "_".join(toks[:n]) in PRESETS:
            base, toks = PRESETS["_".join(toks[:n])], toks[n:]
            break
    if base is None:
        el = _parse_element(text, toks[0])
        if re.fullmatch(r"bfp\d+", toks[0]):
            base = _bfp(el, 16)
        else:
            kind, block = default_scaling_kind(el)
            sf = minifloat(8, 23)
            base = Format(
                element=el,
                scaling=Scaling(kind=kind, block=block, scale_format=sf, rule=default_rule(el, sf)),
            )
        toks = toks[1:]
    mods: dict[str, Any] = {"tokens": {}}
    for tok in toks:
        _parse_modifier(text, tok, mods)
    return _apply(text, base, mods)


def _bfp(el: Element, block: int) -> Format:
    return Format(
        element=el,
        scaling=Scaling(
            kind=ScalingKind.GROUP, block=(block,), scale_format=Pow2Scale(), rule=ScaleRule.FLOOR
        ),
    )


def _apply_element(text: str, el: Element, mods: dict[str, Any]) -> Element:
    mf_keys = {"bias", "nosub", "sat"} & mods.keys()
    if mf_keys:
        if not isinstance(el, Minifloat):
            raise _fail(text, f"{sorted(mf_keys)} apply only to minifloat elements")
        bias = mods.get("bias", el.bias)
        el = dataclasses.replace(
            el,
            bias=bias,
            subnormals=el.subnormals and not mods.get("nosub", False),
            saturate=el.saturate or mods.get("sat", False),
        )
        _check_minifloat(text, el)
    if "grid" in mods:
        if not isinstance(el, IntElement):
            raise _fail(text, "'full' and 'asym' apply only to int elements")
        el = dataclasses.replace(el, grid=mods["grid"])
    return el


def _apply(text: str, base: Format, mods: dict[str, Any]) -> Format:
    el = _apply_element(text, base.element, mods)
    sc = base.scaling
    kind = mods.get("kind", sc.kind)
    block = mods.get("block", sc.block if kind is sc.kind else ())
    sf = mods.get("sf", sc.scale_format)
    if "rule" in mods:
        rule = mods["rule"]
    elif "sf" in mods or (kind is not sc.kind and sc.kind is ScalingKind.NONE):
        rule = default_rule(el, sf)
    else:
        rule = sc.rule
    scaling = Scaling(
        kind=kind,
        block=block,
        axis=mods.get("axis", sc.axis),
        scale_format=sf,
        rule=rule,
        tensor_scale=mods.get("ts", sc.tensor_scale),
    )
    _check_scaling(text, el, scaling, mods)
    if isinstance(el, Minifloat) and kind is not ScalingKind.NONE:
        el = dataclasses.replace(el, saturate=True)  # scaled minifloats always saturate
    mode = mods.get("mode", base.rounding.mode)
    rounding = Rounding(
        mode=mode,
        sr_bits=mods.get("sr_bits", base.rounding.sr_bits if mode is RoundMode.SR else 0),
        seed=mods.get("seed", base.rounding.seed if mode is RoundMode.SR else 0),
    )
    if mode is not RoundMode.SR and rounding.seed:
        raise _fail(text, "seed{n} applies only to stochastic rounding (sr{bits})")
    return Format(element=el, scaling=scaling, rounding=rounding)


def _check_scaling(text: str, el: Element, sc: Scaling, mods: dict[str, Any]) -> None:
    if sc.kind is ScalingKind.NONE:
        stray = sorted(mods["tokens"][k] for k in {"sf", "rule", "ts", "axis"} & mods.keys())
        if stray:
            raise _fail(text, f"{stray} need a scaling (t, c, g{{k}} or b{{r}}x{{c}})")
        if isinstance(el, IntElement) and el.grid is IntGrid.ASYM:
            raise _fail(text, "asymmetric integers need a scaling")
        return
    pow2_sf = isinstance(sc.scale_format, Pow2Scale)
    if pow2_sf and sc.rule in (ScaleRule.AMAX, ScaleRule.MEAN):
        raise _fail(text, "e8m0 scales take floor, ceil, near or mse")
    asym = isinstance(el, IntElement) and el.grid is IntGrid.ASYM
    if asym and (pow2_sf or sc.rule in POW2_RULES or sc.rule is ScaleRule.MEAN):
        raise _fail(text, "asymmetric integers take float scales with the amax or mse rule")
    if sc.tensor_scale and (pow2_sf or sc.kind not in (ScalingKind.GROUP, ScalingKind.BLOCK2D)):
        raise _fail(text, "'ts' needs group or 2-D block scaling with a float scale format")


# ---- printing ------------------------------------------------------------------------------


def _element_token(el: Element) -> str:
    match el:
        case Minifloat():
            suffix = {Specials.IEEE: "", Specials.FN: "fn", Specials.FNUZ: "fnuz"}.get(
                el.specials, "fin"
            )
            return f"e{el.exp_bits}m{el.man_bits}{suffix}"
        case IntElement():
            return f"int{el.bits}"
        case PowerOfTwo():
            return f"pot{el.bits}"
        case Ternary():
            return "ternary"
        case Codebook():
            return el.name or "cb[" + ",".join(repr(v) for v in el.values) + "]"
        case GgufBlock():
            return el.name


def _element_mods(el: Element) -> list[str]:
    out: list[str] = []
    if isinstance(el, Minifloat):
        if el.bias != Minifloat.default_bias(el.exp_bits, el.specials):
            out.append(f"bias{el.bias}")
        if not el.subnormals:
            out.append("nosub")
        if el.saturate:
            out.append("sat")
    return out


def _scale_format_token(sf: ScaleFormat) -> str:
    if isinstance(sf, Pow2Scale):
        return "e8m0"
    names = {(8, 23): "fp32", (8, 7): "bf16", (5, 10): "fp16"}
    std = minifloat(sf.exp_bits, sf.man_bits, sf.specials)
    if (
        sf.signed
        and sf == std
        and (sf.exp_bits, sf.man_bits) in names
        and sf.specials is Specials.IEEE
    ):
        return names[(sf.exp_bits, sf.man_bits)]
    if sf == minifloat(4, 3, Specials.FN):
        return "e4m3"
    if sf == minifloat(5, 3, Specials.FINITE, signed=False):
        return "ue5m3"
    return "_".join([_element_token(sf), *_element_mods(sf)])


def _scaling_tokens(fmt: Format) -> list[str]:
    el, sc = fmt.element, fmt.scaling
    out: list[str] = []
    kind, block = default_scaling_kind(el)
    if (sc.kind, sc.block) != (kind, block):
        match sc.kind:
            case ScalingKind.GROUP:
                out.append(f"g{sc.block[0]}")
            case ScalingKind.BLOCK2D:
                out.append(f"b{sc.block[0]}x{sc.block[1]}")
            case _:
                out.append(sc.kind.value)
    if sc.kind is ScalingKind.NONE:
        return out
    if sc.axis != -1:
        out.append(f"a{sc.axis}")
    if sc.scale_format != minifloat(8, 23):
        out.append("s" + _scale_format_token(sc.scale_format))
    if sc.rule is not default_rule(el, sc.scale_format):
        out.append(sc.rule.value)
    if sc.tensor_scale:
        out.append("ts")
    return out


def _rounding_tokens(r: Rounding) -> list[str]:
    if r.mode is RoundMode.RNE:
        return []
    if r.mode is RoundMode.SR:
        return [f"sr{r.sr_bits}"] + ([f"seed{r.seed}"] if r.seed else [])
    return [r.mode.value]


_ELEMENT_PRESETS: dict[Element, str] = {
    minifloat(4, 3, Specials.FN): "fp8_e4m3",
    minifloat(5, 2): "fp8_e5m2",
    minifloat(3, 2, Specials.FINITE): "fp6_e3m2",
    minifloat(2, 3, Specials.FINITE): "fp6_e2m3",
    minifloat(2, 1, Specials.FINITE): "fp4_e2m1",
    minifloat(8, 7): "bf16",
    minifloat(5, 10): "fp16",
}


def format_to_string(fmt: Format) -> str:
    from quarch.formats._presets import PRESETS, preset_name

    name = preset_name(fmt)
    if name is not None:
        return name
    el = fmt.element
    if isinstance(el, Minifloat) and fmt.scaling.kind is not ScalingKind.NONE:
        el = dataclasses.replace(el, saturate=False)  # implied by the scaling: not printed
    base = _bfp_tokens(fmt) or [_ELEMENT_PRESETS.get(el) or _element_token(el), *_element_mods(el)]
    if _bfp_tokens(fmt):
        rest = _rounding_tokens(fmt.rounding)
    else:
        grid = (
            [el.grid.value]
            if isinstance(el, IntElement) and el.grid is not IntGrid.RESTRICTED
            else []
        )
        rest = _scaling_tokens(fmt) + grid + _rounding_tokens(fmt.rounding)
    # A rounding or axis variant of a preset prints as the preset plus its modifiers.
    for pname, pfmt in PRESETS.items():
        plain = dataclasses.replace(fmt, rounding=Rounding())
        if plain == pfmt and fmt.rounding != Rounding():
            return "_".join([pname, *_rounding_tokens(fmt.rounding)])
    return "_".join(base + rest)


def _bfp_tokens(fmt: Format) -> list[str] | None:
    el, sc = fmt.element, fmt.scaling
    if (
        isinstance(el, IntElement)
        and el.grid is IntGrid.RESTRICTED
        and sc.kind is ScalingKind.GROUP
        and isinstance(sc.scale_format, Pow2Scale)
        and sc.rule is ScaleRule.FLOOR
        and sc.axis == -1
        and not sc.tensor_scale
    ):
        return [f"bfp{el.bits}", f"g{sc.block[0]}"]
    return None
