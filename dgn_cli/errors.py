"""Named exceptions. Each message is one line that says what is wrong and what to do.

The CLI turns any `DgnError` into `error: <message>` on stderr and exit code 1.
"""


class DgnError(Exception):
    """Base class: a problem the user can fix (bad input, missing weights, bad option)."""


class InputError(DgnError):
    """An input file is missing, unreadable, corrupt or of an unsupported kind."""


class OutputError(DgnError):
    """An output cannot be written (exists, equals an input, no permission)."""


class CheckpointError(DgnError):
    """A checkpoint is missing, fails its checksum, or does not match the architecture."""


class DeviceError(DgnError):
    """The requested device or precision is not available here."""
