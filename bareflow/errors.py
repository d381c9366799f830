"""The one exception type the build reports to users.

Every check that rejects user input raises BareflowError with a message naming the culprit
(file, module, symbol, plugin, field).  The SCons glue prints the message without a traceback.
"""


class BareflowError(Exception):
    """A build input or plugin is wrong; the message says which and why."""


def where_raised(exc: BaseException) -> str:
    """' (at file.py:line)' of the innermost frame that raised `exc`, or '' without a traceback.

    For a plugin's unexpected exception, whose message is printed without the traceback: its
    author needs the line."""
    import os
    import traceback
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    if not frames:
        return ""
    return f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})"
