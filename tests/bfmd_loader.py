"""A Python twin of the kernel's BFMD loader, used to run packed modules natively in tests.

It applies exactly the two relocation kinds the kernel applies, in memory obtained from mmap,
and resolves imports against addresses the test supplies (the host's libm for math).
"""
import ctypes
import mmap
import struct

from bareflow.modules import modformat
class LoadedModule:
    def __init__(self, data, resolve):
        info = modformat.parse(data)
        self.info = info
        self._mem = mmap.mmap(-1, max(info.image_size, 1),
                              prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._mem))
        self._mem[:info.file_image_size] = data[64:64 + info.file_image_size]
        for offset, kind, index, addend in info.relocs:
            value = base + addend if kind == modformat.RELATIVE64 else resolve(info.imports[index]) + addend
            self._mem[offset:offset + 8] = struct.pack("<Q", value & (2**64 - 1))
        self.entry_address = base + info.entry_offset

    def function(self, restype, *argtypes):
        return ctypes.CFUNCTYPE(restype, *argtypes)(self.entry_address)


def libm_resolver():
    libm = ctypes.CDLL("libm.so.6")
    libc = ctypes.CDLL("libc.so.6")

    def resolve(name):
        for lib in (libm, libc):
            try:
                return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
            except AttributeError:
                continue
        raise KeyError(name)
    return resolve
