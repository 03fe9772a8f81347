"""What is served: batch, lengths, parallelism and number formats, with no model or hardware in it.

Parallelism, per pipeline stage of `tp × dp` devices (`tp × pp × dp` devices in all):

- `tp`: tensor parallelism (Megatron-LM, Shoeybi et al. 2019, https://arxiv.org/abs/1909.08053):
  attention heads and MLP columns are split `tp` ways; an all-reduce follows the attention output
  projection and the MLP down projection.
- `pp`: pipeline parallelism: layers split over `pp` stages; activations cross each boundary.
- `dp`: data-parallel replicas of the attention and dense parts inside a stage (DP attention,
  as SGLang serves DeepSeek); the batch is split evenly among them.
- `ep`: expert parallelism: the MoE experts are spread over `ep` devices of the stage. With
  `dp = 1` tokens are replicated across the `tp` devices, `ep` divides `tp`, each expert is split
  `tp / ep` ways, and one all-reduce over `tp` combines the experts' outputs. With `dp > 1`,
  either `ep = 1` (experts replicated, no communication) or `tp = 1` and `ep = dp` (tokens
  dispatched to and combined from their experts' devices by two all-to-alls).

Formats are `quarch.formats` strings. `weight_overrides` maps a layer group (`dense`, `moe`), a
role (`embedding`, `attn`, `mlp`, `router`, `experts`, `shared_experts`, `lm_head`) or a
`group.role` pair to a weight format; the most specific key wins (`group.role`, then `role`, then
`group`, then `weight_format`). Formats that change from layer to layer (a mixed design) are
a `Plan` passed to `predict` beside the scenario (see `_plan.py`), not part of it: the scenario
says what is served, the plan how each layer is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from operator import attrgetter
from typing import TYPE_CHECKING

from quarch._checks import check_positive_int

if TYPE_CHECKING:
    from quarch.formats import Format
    from quarch.models import ModelSpec

ROLES = ("embedding", "attn", "mlp", "router", "experts", "shared_experts", "lm_head")
"""Weight roles a `weight_overrides` key may name."""


@lru_cache(maxsize=256)
def format_of(fmt: str) -> Format:
    """The `Format` a format string names: perf's one parse, cached per string. Scenarios, plans
    and ops carry format names (plain, hashable data that keys perf's caches and prints in op
    tables); what perf needs of a format is read through here.

    Raises:
        ValueError: `fmt` is not a valid format string.
    """
    from quarch.formats import Format  # deferred: keeps `import quarch.perf` light

    return Format.parse(fmt)


@lru_cache(maxsize=256)
def bits_per_element(fmt: str) -> float:
    """Bits per element of format `fmt`, scales and zero-points included (cached).

    Raises:
        ValueError: `fmt` is not a valid format string.
    """
    return float(format_of(fmt).bits_per_element)


@lru_cache(maxsize=256)
def element_bits(fmt: str) -> float:
    """Bits of one element of format `fmt` alone, without its scales (cached)."""
    return float(format_of(fmt).element_bits)


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """What is served: requests, lengths, parallelism and formats.

    Fields:
        batch: concurrent sequences in the whole deployment (split over `dp` replicas).
        prompt_len: prompt tokens per sequence (prefill).
        output_len: generated tokens per sequence (decode steps).
        tp, pp, ep, dp: tensor, pipeline, expert and attention-data parallelism (see module doc).
        weight_format, act_format, kv_format: default formats of weights, activations, KV cache.
        weight_overrides: per group / role weight formats; given as a mapping, stored as a sorted
            tuple of pairs so the scenario stays hashable.
    """

    batch: int = 1
    prompt_len: int = 1
    output_len: int = 1
    tp: int = 1
    pp: int = 1
    ep: int = 1
    dp: int = 1
    weight_format: str = "bf16"
    act_format: str = "bf16"
    kv_format: str = "bf16"
    weight_overrides: tuple[tuple[str, str], ...] | Mapping[str, str] = field(default=())
    _hash: int = field(init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        # computed once: scenarios key the op-graph caches
        return self._hash

    def __post_init__(self) -> None:
        # a search builds a scenario per trial: the common case (plain ints, no overrides) is
        # checked without calls; anything else goes through the full checks, which raise
        for name in _COUNT_FIELDS:
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                check_positive_int(f"Scenario.{name}", value)
        if self.batch % self.dp:
            raise ValueError(
                f"Scenario.batch={self.batch} must be divisible by dp={self.dp} "
                "(each attention replica serves batch / dp sequences)"
            )
        overrides = self.weight_overrides
        pairs = () if overrides == () else tuple(sorted(dict(overrides).items()))
        object.__setattr__(self, "weight_overrides", pairs)
        check_format("Scenario.weight_format", self.weight_format)
        check_format("Scenario.act_format", self.act_format)
        check_format("Scenario.kv_format", self.kv_format)
        for key, fmt in pairs:
            _check_override_key(key)
            check_format(f"Scenario.weight_overrides[{key!r}]", fmt)
        object.__setattr__(self, "_hash", hash(_hashed_values(self)))

    @property
    def num_devices(self) -> int:
        """Devices in the deployment: `tp × pp × dp`."""
        return self.tp * self.pp * self.dp

    @property
    def seqs_per_replica(self) -> int:
        """Sequences one attention replica (a `tp` group) serves: `batch / dp`."""
        return self.batch // self.dp

    def weight_format_for(self, group: str, role: str) -> str:
        """The weight format of `role` in layer group `group`: the most specific override wins."""
        if not self.weight_overrides:
            return self.weight_format
        table = dict(self.weight_overrides)
        for key in (f"{group}.{role}", role, group):
            if key in table:
                return table[key]
        return self.weight_format

    def counts(self) -> dict[str, int]:
        """The request and parallelism counts by field name (every field but the formats):
        what a named serving scenario of a study sets."""
        return {name: getattr(self, name) for name in _COUNT_FIELDS}


_COUNT_FIELDS = ("batch", "prompt_len", "output_len", "tp", "pp", "ep", "dp")
_hashed_values = attrgetter(*(f.name for f in fields(Scenario) if f.compare))
"""The tuple of a scenario's compared fields, which its hash is computed from."""


def check_format(where: str, fmt: object) -> None:
    """Raise unless `fmt` is a valid format string (TypeError / ValueError naming `where`)."""
    if not isinstance(fmt, str):
        raise TypeError(f"{where} must be a format string, got {fmt!r}")
    try:
        bits_per_element(fmt)
    except ValueError as err:
        raise ValueError(f"{where}: unknown format {fmt!r}: {err}") from err


def _check_override_key(key: object) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"Scenario.weight_overrides key must be a non-empty string, got {key!r}")
    role = key.rsplit(".", 1)[-1]
    if "." in key and role not in ROLES:
        raise ValueError(
            f"Scenario.weight_overrides key {key!r}: role {role!r} is not one of {ROLES}"
        )


def check_context(spec: ModelSpec, scenario: Scenario) -> None:
    """Refuse a scenario whose sequences (prompt + output tokens) are longer than the model's
    context (`max_position_embeddings`), as a serving engine does: vLLM rejects a request whose
    prompt exceeds `max_model_len`, which defaults to the model config's
    `max_position_embeddings` (https://docs.vllm.ai/en/latest/configuration/engine_args.html,
    `--max-model-len`).

    Raises:
        ValueError: naming the lengths and the model's context.
    """
    total = scenario.prompt_len + scenario.output_len
    if total > spec.max_position_embeddings:
        raise ValueError(
            f"prompt {scenario.prompt_len} + output {scenario.output_len} = {total} tokens per "
            f"sequence exceed {spec.name}'s context of {spec.max_position_embeddings} tokens "
            "(max_position_embeddings); a serving engine refuses such a request"
        )


def check_scenario(spec: ModelSpec, scenario: Scenario) -> None:
    """Check that `scenario`'s parallelism and overrides fit `spec`.

    Raises:
        ValueError: naming the field that does not fit and why.
    """
    tp, ep, dp = scenario.tp, scenario.ep, scenario.dp
    heads = spec.num_heads
    if heads % tp:
        raise ValueError(f"Scenario.tp={tp} must divide {spec.name}'s num_heads={heads}")
    kv = spec.num_kv_heads
    if spec.mla is None and kv % tp and tp % kv:
        raise ValueError(
            f"Scenario.tp={tp} and {spec.name}'s num_kv_heads={kv}: one must divide the other "
            "(KV heads are split, or replicated when tp > num_kv_heads)"
        )
    if scenario.pp > spec.num_layers:
        raise ValueError(
            f"Scenario.pp={scenario.pp} exceeds {spec.name}'s {spec.num_layers} layers"
        )
    _check_ep(spec, tp, ep, dp)
    if not scenario.weight_overrides:
        return
    groups = {g.name for g in spec.layer_groups()}
    for key in dict(scenario.weight_overrides):
        head = key.split(".", 1)[0]
        if head not in groups and head not in ROLES and head not in ("embed", "head"):
            raise ValueError(
                f"Scenario.weight_overrides key {key!r} names neither a layer group of "
                f"{spec.name} {sorted(groups)} nor a role {ROLES}"
            )


def _check_ep(spec: ModelSpec, tp: int, ep: int, dp: int) -> None:
    moe = spec.moe
    if moe is None:
        if ep != 1:
            raise ValueError(
                f"Scenario.ep={ep} needs a mixture-of-experts model; {spec.name} is dense"
            )
        return
    if ep > moe.num_experts:
        raise ValueError(f"Scenario.ep={ep} exceeds {spec.name}'s {moe.num_experts} experts")
    if dp == 1 and tp % ep:
        raise ValueError(f"Scenario.ep={ep} must divide tp={tp} when dp=1")
    if dp > 1 and ep != 1 and not (tp == 1 and ep == dp):
        raise ValueError(
            f"Scenario.ep={ep} with dp={dp}, tp={tp}: with attention data parallelism use ep=1 "
            "(replicated experts) or tp=1 and ep=dp (experts spread over the replicas)"
        )
