"""QuantConfig: rules, first match wins, defaults, exclusions, YAML/JSON round trip, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from quarch.quant import QuantConfig, Role, Rule, TensorSpec
from quarch.quant._config import pattern_matches

Q = "model.layers.3.self_attn.q_proj"
DOWN = "model.layers.3.mlp.down_proj"


def _config() -> QuantConfig:
    return QuantConfig(
        rules=(
            Rule(pattern="*.down_proj", role=Role.WEIGHT, format="int8"),
            Rule(pattern="layers.0.*", role=Role.WEIGHT, format=None),  # keep block 0 float
            Rule(pattern="re:layers\\.[12]\\.", role=Role.WEIGHT, format="mxfp4"),
            Rule(pattern="lm_head", role=Role.WEIGHT, format="int8"),
        ),
        default={
            Role.WEIGHT: TensorSpec(format="int4_g128", method="gptq", params={"percdamp": 0.02}),
            Role.INPUT: TensorSpec(format="fp8_e4m3"),
            Role.K_CACHE: TensorSpec(format="int8"),
        },
        seed=7,
    )


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("q_proj", Q, True),
        ("*.q_proj", Q, True),
        ("layers.3.*", Q, True),
        ("layers.3", Q, True),  # a module group matches its children
        (Q, Q, True),
        ("layers.1", "model.layers.11.mlp.up_proj", False),  # components, not substrings
        ("proj", Q, False),
        ("self_attn", Q, True),
        ("re:layers\\.3\\.self", Q, True),
        ("re:^layers", Q, False),
    ],
)
def test_pattern_matching(pattern: str, name: str, expected: bool) -> None:
    assert pattern_matches(pattern, name) is expected


def test_first_match_wins_then_default() -> None:
    cfg = _config()
    down0 = cfg.spec_for("model.layers.0.mlp.down_proj", Role.WEIGHT)
    assert down0 is not None and down0.format == "int8"  # rule 1 before rule 2
    assert cfg.spec_for("model.layers.0.mlp.up_proj", Role.WEIGHT) is None  # rule 2: float
    q1 = cfg.spec_for("model.layers.1.self_attn.q_proj", Role.WEIGHT)
    assert q1 is not None and q1.format == "mxfp4" and q1.method == "rtn"
    q5 = cfg.spec_for("model.layers.5.self_attn.q_proj", Role.WEIGHT)
    assert q5 == TensorSpec(format="int4_g128", method="gptq", params={"percdamp": 0.02})
    x = cfg.spec_for(Q, Role.INPUT)
    assert x is not None and x.format == "fp8_e4m3"
    assert cfg.spec_for("model.layers.0.self_attn", Role.V_CACHE) is None  # no default


def test_embeddings_and_lm_head_only_when_named() -> None:
    cfg = _config()
    head = cfg.spec_for("lm_head", Role.WEIGHT, excluded=True)
    assert head is not None and head.format == "int8"
    assert cfg.spec_for("model.embed_tokens", Role.WEIGHT, excluded=True) is None  # default skips
    assert cfg.spec_for("lm_head", Role.INPUT, excluded=True) is None
    star = QuantConfig(rules=(Rule(pattern="*", role=Role.WEIGHT, format="int8"),))
    assert star.spec_for("lm_head", Role.WEIGHT, excluded=True) is None  # "*" does not name it
    assert star.spec_for(Q, Role.WEIGHT) is not None


def test_yaml_and_json_round_trip() -> None:
    cfg = _config()
    assert QuantConfig.from_yaml(cfg.to_yaml()) == cfg
    assert QuantConfig.from_json(cfg.to_json()) == cfg
    data = yaml.safe_load(cfg.to_yaml())
    assert data["rules"][0] == {"pattern": "*.down_proj", "role": "weight", "format": "int8"}
    assert data["default"]["weight"]["params"] == {"percdamp": 0.02}


def test_hand_written_yaml() -> None:
    text = """
default:
  weight: {format: int4_g128, method: awq}
  input: fp8_e4m3
rules:
  - {pattern: "*.down_proj", role: weight, format: int8}
"""
    cfg = QuantConfig.from_yaml(text)
    assert cfg.default[Role.INPUT] == TensorSpec(format="fp8_e4m3")
    spec = cfg.spec_for(DOWN, Role.WEIGHT)
    assert spec is not None and spec.format == "int8"


def test_uniform() -> None:
    cfg = QuantConfig.uniform(weights="int4_g128", acts="int8", kv="fp8_e4m3", method="gptq")
    assert cfg.default[Role.WEIGHT].method == "gptq"
    assert cfg.default[Role.K_CACHE] == cfg.default[Role.V_CACHE] == TensorSpec(format="fp8_e4m3")
    assert QuantConfig.from_yaml(cfg.to_yaml()) == cfg


def test_unknown_format_lists_presets() -> None:
    with pytest.raises(ValueError, match=r"int99.*named formats.*mxfp4"):
        QuantConfig.uniform(weights="int99_bogus")


def test_unknown_method_lists_methods() -> None:
    with pytest.raises(ValueError, match=r"unknown method 'gtpq'.*gptq.*rtn"):
        QuantConfig.uniform(weights="int4", method="gtpq")


def test_unknown_method_param() -> None:
    with pytest.raises(ValueError, match="nonsense"):
        QuantConfig.uniform(weights="int4", method="gptq", nonsense=1)


def test_activation_role_takes_no_method() -> None:
    with pytest.raises(ValueError, match="only weights take a method"):
        QuantConfig(rules=(Rule(pattern="*", role=Role.INPUT, format="int8", method="gptq"),))


def test_bad_role_and_keys() -> None:
    with pytest.raises(ValueError, match="unknown tensor role 'weights'"):
        QuantConfig.from_dict({"rules": [{"pattern": "*", "role": "weights", "format": "int8"}]})
    with pytest.raises(ValueError, match="unknown QuantConfig keys"):
        QuantConfig.from_dict({"rule": []})
    with pytest.raises(ValueError, match="bad regex"):
        QuantConfig(rules=(Rule(pattern="re:([", role=Role.WEIGHT, format="int8"),))


def test_unknown_rotation() -> None:
    with pytest.raises(ValueError, match="hadamard"):
        QuantConfig.uniform(weights="int8", rotation="givens")


def test_malformed_config_files_name_the_file(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "cfg.yaml"
    bad_yaml.write_text("rules: [unclosed\n")
    with pytest.raises(ValueError, match=r"cfg\.yaml: not valid YAML"):
        QuantConfig.load(str(bad_yaml))
    bad_json = tmp_path / "cfg.json"
    bad_json.write_text('{"rules": ')
    with pytest.raises(ValueError, match=r"cfg\.json: not valid JSON"):
        QuantConfig.load(str(bad_json))
    with pytest.raises(ValueError, match="cannot read the QuantConfig file"):
        QuantConfig.load(str(tmp_path / "missing.yaml"))
