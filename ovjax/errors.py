"""User-facing errors.

Every failure that bad input can cause is raised as an `OvjaxError` (or a subclass) with a
one-line message; the CLI prints that line and exits non-zero, with no traceback.
"""


class OvjaxError(Exception):
  """A problem with the user's input, reported as one line."""


class AudioError(OvjaxError):
  """An audio file is missing, unreadable, empty, silent or contains NaN/inf."""


class CheckpointError(OvjaxError):
  """A checkpoint folder or file is missing, malformed, unsafe or mismatched."""


class TextError(OvjaxError):
  """Text that cannot be spoken (empty, nothing speakable, unknown language or style)."""
