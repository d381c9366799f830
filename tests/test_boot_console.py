"""The serial console as QEMU's runner shows it: OVMF's terminal control sequences dropped,
whatever the chunking, everything else byte for byte."""
from bareflow.boot.qemu import ConsoleFilter, console_text

# The start of what OVMF writes to the serial port (recorded from Debian's OVMF.fd), then the
# loader's and kernel's plain lines.
OVMF = (b"\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01HBdsDxe: loading Boot0001\r\n"
        b"\x1b[1m\x1b[33m\x1b[40mMapping table\x1b[0m\x1b[37m\x1b[40m\r\n\x1b[07;01HPress "
        b"\x1b[1m\x1b[37m\x1b[40mESC\x1b[0m in 1 seconds\r\n" +
        "bareflow-uefi: loading KERNEL.BIN \u00e9\u6771\U0001f642\r\n".encode())
PLAIN = ("BdsDxe: loading Boot0001\nMapping table\nPress ESC in 1 seconds\n"
         "bareflow-uefi: loading KERNEL.BIN \u00e9\u6771\U0001f642\n")


def test_whole_console_loses_only_the_control_sequences():
    assert console_text(OVMF) == PLAIN


def test_any_chunking_gives_the_same_text():
    for size in range(1, 40):
        f = ConsoleFilter()
        out = b"".join(f.feed(OVMF[i:i + size]) for i in range(0, len(OVMF), size)) + f.flush()
        assert out.decode().replace("\r\n", "\n") == PLAIN, size


def test_a_lone_escape_is_not_swallowed():
    f = ConsoleFilter()
    text = f.feed(b"a\x1b") + f.feed(b"q" + b"x" * 40) + f.flush()
    assert text == b"a\x1bq" + b"x" * 40      # ESC q starts no sequence: kept, nothing held back
    assert console_text(b"tail \x1b[01;") == "tail \x1b[01;"   # cut at the end: flushed as is
