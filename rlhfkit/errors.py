"""One error contract for everything the user causes.

Every problem a user can fix (a config key, a data record, a model path, a reward spec, an output
folder, a studio request) raises a subclass of :class:`RlhfkitError` whose message is one line naming
the file, line, field or config key. The command line catches ``RlhfkitError`` in one place
(:func:`error_exit`): one line ``rlhfkit <command>: error: ...`` on stderr and exit code 2. Anything
else is a bug in rlhfkit and keeps its traceback.

The subclasses live beside the code that raises them and keep the builtin base their callers already
catch (``ValueError`` or ``RuntimeError``):

    ConfigError (config.py)          DataError (data/records.py)       ModelLoadError (models/loading.py)
    RewardError (rewards.py)         ExportError (feedback/export.py)  StudioError, InvalidSubmission,
    MissingFileError (this module)                                     InvalidInput, StudioDBError (feedback/)
"""

from __future__ import annotations

import sys

EXIT_USER_ERROR = 2


class RlhfkitError(Exception):
    """A problem the user caused and can fix; ``str(err)`` is the one line to show."""


class MissingFileError(RlhfkitError, FileNotFoundError):
    """A file or folder the user named does not exist (the message names it)."""


def error_line(command: str, err: BaseException | str) -> str:
    """``rlhfkit <command>: error: <message>`` on one line (newlines in a message are folded)."""
    message = " ".join(line.strip() for line in str(err).splitlines()).strip() or type(err).__name__
    return f"rlhfkit {command}: error: {message}" if command else f"rlhfkit: error: {message}"


def error_exit(command: str, err: BaseException | str) -> int:
    """Print :func:`error_line` to stderr; return the exit code of a user error (2)."""
    print(error_line(command, err), file=sys.stderr)
    return EXIT_USER_ERROR
