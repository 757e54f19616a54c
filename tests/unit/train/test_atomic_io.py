"""Atomic writers (rlhfkit.utils.io): the umask's permissions, flushed to disk before the rename,
one line on a full disk with the old version intact, stale temporary names cleaned."""

import errno
import os
import stat

import pytest

from rlhfkit.config import ConfigError
from rlhfkit.utils import io


@pytest.fixture()
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_and_folders_get_the_umask_permissions(tmp_path, umask_022):
    import torch
    from safetensors.torch import save_file

    def save(folder):
        save_file({"w": torch.zeros(2)}, str(folder / "model.safetensors"))  # safetensors writes 0600
        (folder / "sub").mkdir(mode=0o700)
        (folder / "sub" / "a.json").write_text("{}")

    io.atomic_write_text(tmp_path / "config.yaml", "a: 1\n")
    io.atomic_save_folder(tmp_path / "final", save)
    assert mode(tmp_path / "config.yaml") == 0o644  # mkstemp would give 0600
    assert mode(tmp_path / "final") == 0o755  # mkdtemp would give 0700
    assert mode(tmp_path / "final" / "model.safetensors") == 0o644
    assert mode(tmp_path / "final" / "sub") == 0o755 and mode(tmp_path / "final" / "sub" / "a.json") == 0o644
    assert io.current_umask() == 0o022


def test_files_and_folders_are_flushed_before_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def rename(src, dst):
        synced.append(("rename", os.fspath(dst)))
        real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    io.atomic_save_folder(tmp_path / "final", lambda f: (f / "model.safetensors").write_bytes(b"w"))
    at = synced.index(("rename", str(tmp_path / "final")))
    before = [s for s in synced[:at] if isinstance(s, str)]
    assert any(s.endswith("model.safetensors") for s in before)  # the file
    assert any(os.path.basename(s).startswith(".tmp-final-") for s in before)  # its folder
    assert synced[at + 1:] == [str(tmp_path)]  # and the parent, for the rename itself


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   RuntimeError("safetensors: No space left on device (os error 28)")])
def test_a_full_disk_names_what_was_written_and_keeps_the_old_version(tmp_path, error):
    io.atomic_write_text(tmp_path / "m.txt", "old")
    io.atomic_save_folder(tmp_path / "final", lambda f: (f / "w").write_text("old"))

    def fail(*_):
        raise error

    with pytest.raises(ConfigError, match=f"^no space left on device while writing {tmp_path / 'final'}$"):
        io.atomic_save_folder(tmp_path / "final", fail)
    with pytest.raises(ConfigError, match="^no space left on device while writing .*m.txt$"):
        with io.atomic_path(tmp_path / "m.txt"):
            fail()
    assert (tmp_path / "final" / "w").read_text() == "old" and (tmp_path / "m.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final", "m.txt"]  # no temporary left


def test_other_errors_pass_through(tmp_path):
    def fail(_):
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        io.atomic_save_folder(tmp_path / "final", fail)


def test_clean_stale_removes_temporaries_and_restores_an_orphaned_old_folder(tmp_path):
    (tmp_path / ".tmp-final-ab12").mkdir()
    (tmp_path / ".tmp-metrics.jsonl-cd34").write_text("x")
    (tmp_path / ".old-final").mkdir()
    (tmp_path / ".old-adapter").mkdir()
    (tmp_path / "adapter").mkdir()
    (tmp_path / ".hidden-user-file").write_text("kept")
    done = io.clean_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden-user-file", "adapter", "final"]
    assert ".old-final -> final" in done and ".tmp-final-ab12" in done
