"""A file named as a device that is not a Hardware description is refused by its kind alone:
its content (a key file, a .env, a database) never appears in the message (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from quarch.hardware import load_hardware

SECRET = "sk-live-7f3a9c1e5b2d4f6a8c0e"
DATA = Path(__file__).parent / "data"

FILES: dict[str, bytes] = {
    "creds.env": f"API_KEY={SECRET}\nDB_PASSWORD=hunter2-{SECRET}\n".encode(),
    "settings.yaml": f"password: {SECRET}\ntoken: {SECRET}\n".encode(),
    "config.json": f'{{"token": "{SECRET}", "user": "me"}}'.encode(),
    "list.yaml": f"- {SECRET}\n- {SECRET}\n".encode(),
    "id_ed25519": (
        f"-----BEGIN OPENSSH PRIVATE KEY-----\n{SECRET}{SECRET}\n"
        "-----END OPENSSH PRIVATE KEY-----\n"
    ).encode(),
    "broken.yaml": f"key: [{SECRET}\nother: {{{SECRET}: ]\n".encode(),
    "tabs.yaml": f"a:\n\t{SECRET}: 1\n".encode(),
    "binary.yaml": b"\x89PNG\r\n\x1a\n" + SECRET.encode() + bytes(range(256)),
    "number.yaml": b"31415926535897932384626433832795028841971",
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_a_file_that_is_not_hardware_is_refused_without_its_content(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(FILES[name])
    with pytest.raises(ValueError) as info:
        load_hardware(str(path))
    msg = str(info.value)
    assert SECRET not in msg and "hunter2" not in msg and "3141592653" not in msg, msg
    assert "\n" not in msg and len(msg) < 400, msg
    assert msg.startswith(name), msg


def test_a_hardware_file_with_a_stray_key_names_the_key_not_its_value(tmp_path: Path) -> None:
    doc = yaml.safe_load((DATA / "toy-gpu.yaml").read_text())
    doc["api_token"] = SECRET
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ValueError, match=r"^toy\.yaml: api_token: unknown key") as info:
        load_hardware(path)
    assert SECRET not in str(info.value)


def test_a_long_value_is_quoted_as_a_short_excerpt(tmp_path: Path) -> None:
    doc = yaml.safe_load((DATA / "toy-gpu.yaml").read_text())
    doc["vendor"] = ["x" * 10_000] * 10
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ValueError, match=r"^toy\.yaml: vendor: must be a non-empty string") as e:
        load_hardware(path)
    assert len(str(e.value)) < 200, str(e.value)
