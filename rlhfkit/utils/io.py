"""Atomic writes: nothing half-written is ever visible under the final name.

Every file or folder is written under a temporary name beside its target (``.tmp-<name>-<random>``),
flushed to disk (the files, then the folders that hold them), renamed into place, and the parent
folder is flushed so the rename itself survives a power cut. Temporary names are created with the
process umask (``tempfile.mkstemp``/``mkdtemp`` would make them 0600/0700, and the rename would
carry that over to the result: another user could not read a trained model). A full disk is
reported as one line naming what was being written (:func:`raise_if_disk_full`); the previous
version under the final name is left as it was. :func:`clean_stale` removes the temporary folders a
killed process leaves behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"


def _tmp_name(target: Path) -> Path:
    return target.with_name(f"{TMP_PREFIX}{target.name}-{secrets.token_hex(4)}")


def is_disk_full(err: BaseException) -> bool:
    """ENOSPC as an OSError, or as the RuntimeError torch.save raises from its zip writer
    (``[enforce fail at inline_container.cc] ... file write failed`` / ``No space left on device``)."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err)
    return ("No space left on device" in text or "os error 28" in text
            or ("inline_container" in text and "file write failed" in text))


def raise_if_disk_full(err: BaseException, target: str | Path) -> None:
    """Turn a disk-full error into the one-line user error ``no space left on device while writing
    <target>`` (a ConfigError: exit 2 from the CLI); any other error is left alone."""
    if is_disk_full(err):
        from rlhfkit.config import ConfigError

        raise ConfigError(f"no space left on device while writing {target}") from None


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk; a no-op where folders cannot
    be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc), else set and reset."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def settle_tree(folder: Path) -> None:
    """Give every file and folder under ``folder`` the umask's permissions (some writers, such as
    safetensors, create 0600 files) and flush them to disk: the files, then each folder, deepest
    first."""
    mask = current_umask()
    for root, _, files in os.walk(folder, topdown=False):
        for name in files:
            path = Path(root) / name
            if path.is_symlink():
                continue
            os.chmod(path, 0o666 & ~mask)
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(root, 0o777 & ~mask)
        fsync_dir(Path(root))


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """``with atomic_path(p) as tmp: write(tmp)``: the file written to ``tmp`` replaces ``p`` when
    the block ends without an error (flushed, umask permissions), and is removed when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # mode & ~umask
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        raise_if_disk_full(err, path)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def atomic_save_folder(folder: str | Path, save: Callable[[Path], None]) -> Path:
    """Write a folder via ``save(tmp)`` and rename it to ``folder`` (replacing an older one: the old
    one is renamed to ``.old-<name>`` first, and :func:`clean_stale` puts it back if a kill lands
    between the two renames)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(folder)
    try:
        tmp.mkdir()  # mode 0777 & ~umask, unlike tempfile.mkdtemp's 0700
        save(tmp)
        settle_tree(tmp)
        if folder.exists():
            old = folder.with_name(f"{OLD_PREFIX}{folder.name}")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
        fsync_dir(folder.parent)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise_if_disk_full(err, folder)
        raise
    return folder


def clean_stale(folder: str | Path) -> list[str]:
    """Remove the ``.tmp-*`` files and folders a killed writer left in ``folder``; an ``.old-NAME``
    folder is renamed back to ``NAME`` when ``NAME`` is missing (killed between the two renames of
    :func:`atomic_save_folder`), else removed. Returns the names it removed or restored."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    done = []
    for child in sorted(folder.iterdir()):
        if child.name.startswith(OLD_PREFIX) and child.is_dir():
            target = child.with_name(child.name[len(OLD_PREFIX):])
            if not target.exists():
                child.rename(target)
                done.append(f"{child.name} -> {target.name}")
                continue
        elif not child.name.startswith(TMP_PREFIX):
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
        done.append(child.name)
    return done
