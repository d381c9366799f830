"""SCons actions: thin adapters from SCons nodes to bareflow functions.

Every action writes its outputs through a temporary file and a rename, so a failed step never
leaves an output that looks finished, and reports BareflowError as one clear line.
"""
import os
import sys
import threading

from bareflow.core.atomicfile import replace_atomically
from bareflow.errors import BareflowError

# llvmlite shares one LLVM context per process; SCons runs Python actions in threads under -j.
LLVM_LOCK = threading.Lock()


def report_errors(func):
    """Turn BareflowError into an SCons failure with the message, not a traceback."""
    def action(target, source, env):
        try:
            func(target, source, env)
        except BareflowError as exc:
            sys.stderr.write(f"bareflow: error: {exc}\n")
            for node in target:
                path = str(node)
                if os.path.exists(path):
                    os.remove(path)
            return 1
        return 0
    action.__name__ = func.__name__
    return action


def write_atomic(path, data):
    with replace_atomically(path) as handle:
        handle.write(data)


def read(node):
    with open(str(node), "rb") as handle:
        return handle.read()
