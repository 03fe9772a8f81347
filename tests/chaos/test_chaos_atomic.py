"""`quarch._atomic`: a write that fails (an error, a full disk, a kill) never leaves a partial
file under the final name, and the next write of the same target cleans up after it."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mounts import read_only_dir, small_tmpfs

from quarch import _atomic
from quarch._atomic import (
    atomic_open,
    staged_dir,
    writable_dir,
    writable_file,
    write_bytes,
    write_json,
    write_text,
    write_yaml,
)


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_each_writer_replaces_the_whole_file(tmp_path: Path) -> None:
    write_text(tmp_path / "a.txt", "old, and longer than the new text")
    write_text(tmp_path / "a.txt", "new")
    assert (tmp_path / "a.txt").read_text() == "new"
    write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    write_json(tmp_path / "c.json", {"x": [1, 2]})
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": [1, 2]}
    write_yaml(tmp_path / "d.yaml", {"k": "v"}, head="# head\n")
    assert (tmp_path / "d.yaml").read_text() == "# head\nk: v\n"
    with atomic_open(tmp_path / "e.csv", newline="") as f:
        f.write("a,b\r\n")
    assert (tmp_path / "e.csv").read_bytes() == b"a,b\r\n"
    assert _hidden(tmp_path) == []


def test_new_files_get_the_permissions_open_gives(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_an_error_mid_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "front.csv"
    write_text(target, "old\n")
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write("half of the new ")
        raise RuntimeError("killed")
    assert target.read_text() == "old\n"
    assert _hidden(tmp_path) == []


def test_a_library_that_writes_nothing_fails(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), _atomic.atomic_path(tmp_path / "x.png"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_a_temporary_keeps_the_suffix_and_is_hidden(tmp_path: Path) -> None:
    with _atomic.atomic_path(tmp_path / "roofline.png") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp.name.startswith(".")
        tmp.write_bytes(b"png")
    assert (tmp_path / "roofline.png").read_bytes() == b"png"


def test_temporaries_of_a_killed_writer_are_swept_by_the_next_write(tmp_path: Path) -> None:
    # a child that dies (SIGKILL) in the middle of writing report.html
    code = textwrap.dedent(
        f"""
        import os, signal
        from quarch._atomic import atomic_open
        with atomic_open({str(tmp_path / "report.html")!r}) as f:
            f.write("<html>" * 1000)
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], check=False)
    assert done.returncode == -signal.SIGKILL
    assert not (tmp_path / "report.html").exists()
    assert len(_hidden(tmp_path)) == 1  # the dead writer's temporary, under a hidden name
    write_text(tmp_path / "report.html", "<html></html>")
    assert (tmp_path / "report.html").read_text() == "<html></html>"
    assert _hidden(tmp_path) == []


def test_a_live_writers_temporary_is_left_alone(tmp_path: Path) -> None:
    with atomic_open(tmp_path / "a.txt") as f:
        f.write("mine")
        write_text(tmp_path / "a.txt", "another writer of the same file in this process")
        assert len(_hidden(tmp_path)) == 1
    assert (tmp_path / "a.txt").read_text() == "mine"


def test_staged_dir_publishes_a_new_directory_at_once(tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    with staged_dir(out, last="marker.json") as stage:
        (stage / "model.safetensors").write_bytes(b"w")
        (stage / "marker.json").write_text("{}")
        assert not out.exists()
    assert sorted(p.name for p in out.iterdir()) == ["marker.json", "model.safetensors"]
    assert _hidden(tmp_path) == []


def test_staged_dir_into_an_existing_directory_moves_the_marker_last(tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "mine.txt").write_text("the user's")
    (out / "marker.json").write_text('{"old": true}')
    order: list[str] = []
    real = os.replace

    def spy(src: object, dst: object) -> None:
        order.append(Path(str(dst)).name)
        real(src, dst)  # type: ignore[arg-type]

    with staged_dir(out, last="marker.json") as stage:
        (stage / "a.bin").write_bytes(b"a")
        (stage / "marker.json").write_text('{"old": false}')
        os.replace = spy  # type: ignore[assignment]
    os.replace = real
    assert order == ["a.bin", "marker.json"]
    assert json.loads((out / "marker.json").read_text()) == {"old": False}
    assert (out / "mine.txt").read_text() == "the user's"


def test_a_failed_stage_publishes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    with pytest.raises(ValueError), staged_dir(out) as stage:
        (stage / "a.bin").write_bytes(b"a")
        raise ValueError("the export failed")
    assert not out.exists() and _hidden(tmp_path) == []


def test_writable_dir_creates_and_refuses_with_one_line(tmp_path: Path) -> None:
    assert writable_dir(tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"--out '.*file/sub': not a writable directory"):
        writable_dir(tmp_path / "file" / "sub")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        writable_dir(tmp_path / "file")
    with pytest.raises(ValueError, match="is a directory, expected a file name"):
        writable_file(tmp_path / "a")


def test_writable_dir_refuses_a_read_only_directory(tmp_path: Path) -> None:
    with read_only_dir(tmp_path / "ro") as read_only:
        if not read_only:
            pytest.skip("no read-only directory here (root without mount rights)")
        with pytest.raises(ValueError, match=r"not a writable directory \(Read-only|Permission"):
            writable_dir(tmp_path / "ro")
        with pytest.raises(ValueError, match="not a writable directory"):
            writable_dir(tmp_path / "ro" / "new")


def _fill(folder: Path) -> None:
    """Fill the file system of `folder` (a small tmpfs) to the last byte."""
    try:
        with (folder / "ballast").open("wb", buffering=0) as f:
            while True:
                f.write(b"\0" * 4096)
    except OSError as err:
        assert err.errno == 28  # ENOSPC


def test_a_full_disk_keeps_the_old_file(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", 256) as mounted:
        if not mounted:
            pytest.skip("cannot mount a tmpfs here; test_a_file_size_limit_... covers it")
        disk = tmp_path / "disk"
        write_text(disk / "front.csv", "old\n")
        _fill(disk)
        with pytest.raises(OSError, match="No space left"):
            write_text(disk / "front.csv", "new " * 100_000)
        assert (disk / "front.csv").read_text() == "old\n"
        assert _hidden(disk) == []


def test_a_file_size_limit_keeps_the_old_file(tmp_path: Path) -> None:
    """The full-disk case without mount rights: RLIMIT_FSIZE makes a long write fail (EFBIG)."""
    target = tmp_path / "result.json"
    write_text(target, "old\n")
    code = textwrap.dedent(
        f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        from quarch._atomic import write_text
        try:
            write_text({str(target)!r}, "x" * 100_000)
        except OSError as err:
            print(err.errno)
            sys.exit(3)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    assert int(done.stdout) == 27  # EFBIG
    assert target.read_text() == "old\n"
    assert _hidden(tmp_path) == []
    assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] != 4096  # (only the child was limited)
