"""The one exception type the build reports to users.

Every check that rejects user input raises BareflowError with a message naming the culprit
(file, module, symbol, plugin, field).  The SCons glue prints the message without a traceback.
"""


class BareflowError(Exception):
    """A build input or plugin is wrong; the message says which and why."""
