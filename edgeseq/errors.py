"""Typed errors: the CLI maps EdgeseqError to a one-line message and exit 2; ParityFailure is exit 1."""


class EdgeseqError(Exception):
    """Bad usage or bad input: reported as one line, exit code 2."""

    exit_code = 2


class UnknownNameError(EdgeseqError):
    """A model, format, precision or runtime name that is not registered."""


class InputError(EdgeseqError):
    """A feed with wrong names, shapes, dtypes or values."""


class ArtifactError(EdgeseqError):
    """A file that is missing, unreadable or not a model this runtime can load."""


class OutputError(EdgeseqError):
    """An output file or folder that cannot be written (a file in the way, no permission, a read-only place)."""


class ExportError(EdgeseqError):
    """The converter failed or produced an artifact that breaks its contract (e.g. a fixed time axis)."""


class MissingExtraError(EdgeseqError):
    """An optional library is not installed; the message names the pip command."""


class UnsupportedError(EdgeseqError):
    """A valid request this build cannot serve (format x precision not implemented, no device)."""


class RuntimeFailure(EdgeseqError):
    """A runtime accepted the artifact and the feed, then failed while running it (a failed check: exit 1)."""

    exit_code = 1


class DeviceError(EdgeseqError):
    """A device could not be reached or could not run the job (unreachable, auth, no python, no runtime)."""
