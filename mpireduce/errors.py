"""One exception base class for everything mpireduce reports to a user.

Every message says what went wrong *and what to do*; the CLI prints it on one line
and exits non-zero before any work starts.
"""


class MpiReduceError(Exception):
    """Base class of all errors mpireduce raises on purpose."""


class ConfigError(MpiReduceError):
    """The job configuration is invalid (unknown key, wrong type, bad value)."""


class InputError(MpiReduceError):
    """An input file or dataset is missing, unreadable or has the wrong shape."""


class ModelError(MpiReduceError):
    """A classifier model file is missing, corrupt or incompatible."""


class OutputError(MpiReduceError):
    """The output cannot be written (exists without --overwrite, no permission...)."""
