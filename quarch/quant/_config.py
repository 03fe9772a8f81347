"""`QuantConfig`: which format and method each tensor of a model gets.

A config is a list of rules plus per-role defaults. A rule names a layer-name pattern, one tensor
role and a format string (or `None`: keep this tensor in floating point), and for weights a
method with parameters. For each (layer, role), the **first rule that matches wins**; a layer no
rule matches gets the role's default; a role with no default stays in floating point.

Patterns are fnmatch globs matched against a run of whole dot-separated components of the
module's name: `q_proj`, `*.q_proj`, `layers.3.*`, `layers.3` and `model.layers.3.mlp.down_proj`
all match `model.layers.3.mlp.down_proj`, while `layers.1` does not match `model.layers.11.mlp`
(`*` may still cross dots). A pattern written `re:<regex>` is a Python regex searched in the full
name instead.

The input embedding and the LM head are never touched by defaults, nor by a rule unless its
pattern names them: the rule's pattern contains the module's own last name (`lm_head`,
`*.embed_tokens`, `re:embed_tokens$`).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any

import yaml

from quarch._checks import choice

if TYPE_CHECKING:
    from quarch.formats import Format


class Role(StrEnum):
    """The tensors of a layer a rule can give a format."""

    WEIGHT = "weight"  # the weight of a linear layer (or of an embedding, when named)
    INPUT = "input"  # the activation at a linear layer's input, quantized dynamically
    K_CACHE = "k_cache"  # keys after RoPE, along the head dimension (attention modules)
    V_CACHE = "v_cache"  # values, along the head dimension (attention modules)


RTN = "rtn"


@dataclass(frozen=True, kw_only=True)
class TensorSpec:
    """What one tensor gets: a format string (`None` = keep float), a method and its params.

    Only weights have methods; activations and the KV cache are always rounded to nearest with
    dynamic scales, so their method must be `rtn`. `fmt` is the parsed `Format`, parsed once
    (when the config is validated) and kept.
    """

    format: str | None
    method: str = RTN
    params: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def fmt(self) -> Format | None:
        """The format as a `Format` (None: keep float); raises ValueError naming the presets."""
        return None if self.format is None else parse_format(self.format)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": self.format}
        if self.method != RTN:
            out["method"] = self.method
        if self.params:
            out["params"] = dict(self.params)
        return out


@dataclass(frozen=True, kw_only=True)
class Rule:
    """Layers whose name matches `pattern` give their `role` tensor this format and method."""

    pattern: str
    role: Role
    format: str | None
    method: str = RTN
    params: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def spec(self) -> TensorSpec:
        """The rule's spec (one object per rule, so its parsed format is kept)."""
        return TensorSpec(format=self.format, method=self.method, params=self.params)

    def matches(self, name: str) -> bool:
        return pattern_matches(self.pattern, name)

    def names_explicitly(self, name: str) -> bool:
        """Whether the pattern mentions the module's own name (needed for embeddings / LM head)."""
        leaf = name.rsplit(".", 1)[-1]
        return leaf in self.pattern and self.matches(name)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pattern": self.pattern, "role": str(self.role)}
        out.update(self.spec.to_dict())
        return out


def pattern_matches(pattern: str, name: str) -> bool:
    """Whether a rule pattern matches a module name (see the module docstring)."""
    if pattern.startswith("re:"):
        return re.search(pattern[3:], name) is not None
    return any(
        fnmatch.fnmatchcase(name, p)
        for p in (pattern, f"*.{pattern}", f"{pattern}.*", f"*.{pattern}.*")
    )


@dataclass(frozen=True, kw_only=True)
class QuantConfig:
    """Rules (first match wins) and per-role defaults; see the module docstring.

    rotation: a model-level method applied before anything is quantized (`"hadamard"`), or None.
    seed: the seed of calibration sampling and of any random rotation.
    """

    rules: tuple[Rule, ...] = ()
    default: Mapping[Role, TensorSpec] = field(default_factory=dict)
    rotation: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "default", {Role(k): v for k, v in self.default.items()})
        for rule in self.rules:
            _validate_spec(rule.spec, rule.role, where=f"rule {rule.pattern!r} ({rule.role})")
            if rule.pattern.startswith("re:"):
                try:
                    re.compile(rule.pattern[3:])
                except re.error as err:
                    raise ValueError(f"rule pattern {rule.pattern!r}: bad regex: {err}") from err
        for role, spec in self.default.items():
            _validate_spec(spec, role, where=f"default {role}")
        if self.rotation is not None:
            _validate_rotation(self.rotation)

    # ---- construction -------------------------------------------------------------------

    @staticmethod
    def uniform(
        weights: str | None = None,
        acts: str | None = None,
        kv: str | None = None,
        method: str = RTN,
        *,
        rotation: str | None = None,
        seed: int = 0,
        **params: Any,
    ) -> QuantConfig:
        """Every linear layer's weight in `weights` (with `method(**params)`), every linear input
        in `acts`, keys and values in `kv`; embeddings and LM head stay float."""
        default: dict[Role, TensorSpec] = {}
        if weights is not None:
            default[Role.WEIGHT] = TensorSpec(format=weights, method=method, params=params)
        elif method != RTN or params:
            raise ValueError(f"method {method!r} given without a weight format")
        if acts is not None:
            default[Role.INPUT] = TensorSpec(format=acts)
        if kv is not None:
            default[Role.K_CACHE] = default[Role.V_CACHE] = TensorSpec(format=kv)
        return QuantConfig(default=default, rotation=rotation, seed=seed)

    def spec_for(self, name: str, role: Role, *, excluded: bool = False) -> TensorSpec | None:
        """The spec of `role` for module `name` (None: keep float). `excluded` marks the input
        embedding and LM head, which only a rule naming them explicitly can quantize."""
        for rule in self.rules:
            if rule.role is not role:
                continue
            if rule.names_explicitly(name) if excluded else rule.matches(name):
                return rule.spec if rule.format is not None else None
        if excluded:
            return None
        spec = self.default.get(role)
        return spec if spec is not None and spec.format is not None else None

    # ---- serialisation ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules": [r.to_dict() for r in self.rules],
            "default": {str(role): spec.to_dict() for role, spec in self.default.items()},
            "rotation": self.rotation,
            "seed": self.seed,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> QuantConfig:
        if not isinstance(data, Mapping):
            raise TypeError(f"a QuantConfig must be a mapping, got {type(data).__name__}")
        unknown = set(data) - {"rules", "default", "rotation", "seed"}
        if unknown:
            raise ValueError(
                f"unknown QuantConfig keys {sorted(unknown)}; valid: rules, default, rotation, seed"
            )
        rules = tuple(_rule_from_dict(r) for r in data.get("rules") or ())
        default = {
            _role(k): _spec_from_dict(v, where=f"default {k}")
            for k, v in (data.get("default") or {}).items()
        }
        return QuantConfig(
            rules=rules,
            default=default,
            rotation=data.get("rotation"),
            seed=int(data.get("seed", 0)),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @staticmethod
    def from_json(text: str) -> QuantConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"not valid JSON: {err}") from None
        return QuantConfig.from_dict(data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @staticmethod
    def from_yaml(text: str, *, where: str = "QuantConfig") -> QuantConfig:
        """A config from YAML text, read by quarch's bounded safe reader (errors name `where`)."""
        from quarch._yaml import load_yaml_text

        data = load_yaml_text(text, where=where)
        try:
            return QuantConfig.from_dict(data)
        except (ValueError, TypeError) as err:
            raise type(err)(f"{where}: {err}") from None

    @staticmethod
    def load(path: str) -> QuantConfig:
        """Read a `.json` file, or YAML otherwise (errors name the file)."""
        from quarch._yaml import read_text_file

        text = read_text_file(path, where=f"cannot read the QuantConfig file {path!r}")
        if not path.endswith(".json"):
            return QuantConfig.from_yaml(text, where=path)
        try:
            return QuantConfig.from_json(text)
        except (ValueError, TypeError) as err:
            raise type(err)(f"{path}: {err}") from None


def _role(value: Any) -> Role:
    return choice(Role, value, "tensor role")


def _spec_from_dict(data: Any, *, where: str) -> TensorSpec:
    if isinstance(data, str) or data is None:
        return TensorSpec(format=data)
    if not isinstance(data, Mapping):
        raise TypeError(f"{where}: expected a mapping or a format string, got {data!r}")
    unknown = set(data) - {"format", "method", "params"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; valid: format, method, params")
    if "format" not in data:
        raise ValueError(f"{where}: missing 'format' (use null to keep the tensor float)")
    return TensorSpec(
        format=data["format"],
        method=data.get("method", RTN),
        params=dict(data.get("params") or {}),
    )


def _rule_from_dict(data: Any) -> Rule:
    if not isinstance(data, Mapping):
        raise TypeError(f"a rule must be a mapping, got {data!r}")
    unknown = set(data) - {"pattern", "role", "format", "method", "params"}
    if unknown:
        raise ValueError(
            f"rule {data!r}: unknown keys {sorted(unknown)}; "
            "valid: pattern, role, format, method, params"
        )
    for key in ("pattern", "role", "format"):
        if key not in data:
            raise ValueError(f"rule {data!r}: missing {key!r}")
    return Rule(
        pattern=str(data["pattern"]),
        role=_role(data["role"]),
        format=data["format"],
        method=data.get("method", RTN),
        params=dict(data.get("params") or {}),
    )


def _validate_spec(spec: TensorSpec, role: Role, *, where: str) -> None:
    if spec.format is not None and not isinstance(spec.format, str):
        raise TypeError(f"{where}: a format must be a string, got {spec.format!r}")
    try:
        _ = spec.fmt  # parsed here, once, and kept
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err
    if role is not Role.WEIGHT and (spec.method != RTN or spec.params):
        raise ValueError(
            f"{where}: only weights take a method; {role} is quantized dynamically (rtn), "
            f"got method={spec.method!r} params={dict(spec.params)}"
        )
    if role is Role.WEIGHT:
        methods = available_methods()
        if spec.method not in methods:
            raise ValueError(
                f"{where}: unknown method {spec.method!r}; valid methods: {sorted(methods)}"
            )
        try:
            methods[spec.method].resolve_params(spec.params)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{where}: {err}") from err


def parse_format(text: str, *, where: str | None = None) -> Format:
    """A format string as a `Format`, re-raising a bad one with the valid presets named.

    Raises:
        TypeError: not a string.
        ValueError: not a format (the message names `where`, when given, and the presets).
    """
    from quarch.formats import PRESETS, Format

    head = f"{where}: " if where else ""
    if not isinstance(text, str):
        raise TypeError(f"{head}a format must be a string, got {text!r}")
    try:
        return Format.parse(text)
    except ValueError as err:
        raise ValueError(
            f"{head}unknown format {text!r} ({err}); named formats: {sorted(PRESETS)}; "
            "generic forms: see docs/formats.md"
        ) from err


def _validate_rotation(name: str) -> None:
    if name not in available_rotations():
        raise ValueError(f"unknown rotation {name!r}; valid: {sorted(available_rotations())}")


# ---- the method registry ------------------------------------------------------------------
# Weight methods live in `quarch.quant._methods_api` (METHODS: name -> Method); the one
# model-level transform is its `rotate_model(model, *, seed)`, named "hadamard" here.


def available_methods() -> Mapping[str, Any]:
    """Weight methods by name."""
    from quarch.quant._methods_api import METHODS

    return METHODS


def available_rotations() -> Mapping[str, Any]:
    """Model-level rotations by name -> `rotate_model(model, *, seed)`."""
    from quarch.quant._methods_api import rotate_model

    return {"hadamard": rotate_model}
