"""What the machine code of prebuilt x86-64 objects needs: ISA level, thread pointer, privilege.

The llvm-libc provider (llvm_libc.py) hands out members of a static archive built for a Linux
host.  Whether a member can run inside BareFlow shows only in its instructions, so every
member is disassembled (binutils' objdump, one run over the whole archive) and each
instruction classified:

- ISA level (x86-64 psABI micro-architecture levels): VEX-encoded instructions (AVX, AVX2, FMA,
  BMI1/2, F16C) and LZCNT/MOVBE need x86-64-v3 (TZCNT: see _V3); EVEX (AVX-512) needs x86-64-v4; SSE3,
  SSSE3, SSE4.1/4.2 and POPCNT need x86-64-v2; XOP (AMD only) is in no level.
- %fs-relative accesses: the thread pointer.  BareFlow's per-core TCB (src/runtime/tcb.c)
  defines %fs:0 (self-pointer) and %fs:0x28 (stack-protector canary); any other offset is a
  thread-local variable nothing lays out.  %gs is the kernel's per-CPU record: never.
- Instructions a ring-0 program must not run on a library's behalf: system calls, port I/O,
  halting, interrupt flag, MSR, descriptor-table, control/debug-register and FS/GS-base writes.

objdump is used rather than an own decoder: its x86 tables are complete and well kept.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field

from bareflow.errors import BareflowError

LEVEL_NAMES = ("x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4")
BEYOND_LEVELS = 99            # in no x86-64 level (XOP, VEX extensions newer than v3)
TCB_OFFSETS = {0x0: "the TCB's self-pointer", 0x28: "the stack-protector canary"}

_PREFIXES = {0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x66, 0x67}
# Non-VEX mnemonics beyond SSE2, by level (SSE3, SSSE3, SSE4.1, SSE4.2, POPCNT: v2).
_V2 = re.compile(r"^(round[sp][sd]|pshufb|palignr|ph(add|sub)\w*|pabs[bdw]|psign[bdw]|pmaddubsw|pmulhrsw|"
                 r"ptest|pblend\w*|blendv?p[sd]|dpp[sd]|insertps|extractps|pextr[bdq]|pinsr[bdq]|"
                 r"pmin[su][bdw]|pmax[su][bdw]|pmulld|pmuldq|pcmp(eq|gt)q|packusdw|pmov[sz]x\w+|movntdqa|"
                 r"mpsadbw|phminposuw|pcmp[ei]str[im]|crc32\w?|popcnt|addsubp[sd]|h(add|sub)p[sd]|"
                 r"mov[sh]dup|movddup|lddqu|fisttp\w*)$")
# TZCNT is not here: without BMI1 its encoding (F3 0F BC) executes as BSF, the same result for a
# nonzero operand, and LLVM emits it for baseline targets exactly where a zero operand is undefined
# (llvm-libc's SSE2 strlen does).  LZCNT has no such twin (BSR counts from the other end).
_V3 = re.compile(r"^(lzcnt|movbe)$")
# VEX-encoded, but newer than x86-64-v3 (AVX-VNNI, AVX-IFMA, AVX-NE-CONVERT).
_VEX_BEYOND_V3 = re.compile(r"^(vpdp\w+|vpmadd52\w+|vbcstne\w+|vcvtne\w+)$")
_PRIVILEGED = re.compile(r"^(syscall|sysenter|sysexit|sysret\w*|int|into|int1|hlt|cli|sti|in[bwl]?|out[bwl]?|"
                         r"ins[bwld]?|outs[bwld]?|rdmsr|wrmsr|lgdt|lidt|lldt|ltr|sgdt|sidt|invlpg|invpcid|"
                         r"wbinvd|invd|clts|swapgs|iret\w*|lmsw|xsetbv|wr[fg]sbase|rd[fg]sbase|monitor|mwait)$")
# The most frequent plain instructions: skip the pattern matches for them.
_COMMON = {"mov", "movl", "movq", "movb", "movw", "lea", "add", "sub", "cmp", "test", "jmp", "je", "jne", "ja",
           "jb", "jae", "jbe", "jg", "jl", "jge", "jle", "js", "jns", "call", "ret", "push", "pop", "xor",
           "and", "or", "shl", "shr", "sar", "imul", "movzbl", "movzwl", "movslq", "movsd", "movss", "movaps",
           "movapd", "movups", "movd", "nop", "nopl", "nopw", "cs", "cmpq", "cmpl", "cmpb", "addq", "subq",
           "leaq", "cmove", "cmovne", "sete", "setne", "inc", "dec", "neg", "not", "xchg", "cltq", "cqto"}
_CONTROL_REGISTER = re.compile(r"%[cd]r\d")
_FS = re.compile(r"%fs:(-?0x[0-9a-f]+|-?\d+)?(\(|,|$|\s)")
_BYTE = {f"{b:02x}": b for b in range(256)}
_HEADER = re.compile(r"^(\S.*):\s+file format (\S+)$")
_SKIP_WORDS = {"lock", "rep", "repz", "repe", "repnz", "repne", "data16", "addr32", "cs", "ds", "es", "ss",
               "notrack", "bnd", "rex", "rex.w", "rex.b", "rex.r", "rex.x"}


@dataclass
class MemberCode:
    """One archive member's instructions, summarised."""
    name: str
    level: int = 0                                   # index into LEVEL_NAMES (or BEYOND_LEVELS)
    level_example: str = ""                          # an instruction that needs `level`
    fs_offsets: set = field(default_factory=set)     # %fs displacements read or written
    hazards: list = field(default_factory=list)      # privileged instructions, %gs, unknown %fs


def objdump_path():
    """binutils' objdump, or None."""
    return shutil.which("objdump")


def scan_archive(path) -> list[MemberCode]:
    """One MemberCode per regular member of the archive at `path`, in archive order.

    Raises BareflowError when objdump is missing or fails (naming the archive)."""
    tool = objdump_path()
    if tool is None:
        raise BareflowError(f"checking the machine code of {path} needs objdump (Debian package binutils)")
    run = subprocess.run([tool, "-d", "-w", str(path)], capture_output=True, text=True)
    if run.returncode != 0:
        raise BareflowError(f"objdump -d {path} failed: {run.stderr.strip()[:300]}")
    return parse(run.stdout)


def parse(text) -> list[MemberCode]:
    """MemberCode for each object in `objdump -d -w` output (one per "file format" header)."""
    members, current = [], None
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0].endswith(":") and current is not None:
            _classify(current, parts[1], "\t".join(parts[2:]).split("#")[0].strip())
            continue
        header = _HEADER.match(line) if "file format" in line else None
        if header:
            current = MemberCode(header.group(1))
            members.append(current)
    return members


def _classify(member, raw_hex, text):
    """Fold one instruction (its bytes as objdump's hex, its text without comment) into `member`."""
    words = text.split()
    while words and words[0] in _SKIP_WORDS:
        words.pop(0)
    if not words:
        return
    mnemonic = words[0].split(".")[0]
    operands = " ".join(words[1:])
    first = None
    for byte in raw_hex.split():
        first = _BYTE[byte]
        if first not in _PREFIXES and not 0x40 <= first <= 0x4F:
            break
    if first in (0xC4, 0xC5):
        level = BEYOND_LEVELS if _VEX_BEYOND_V3.match(mnemonic) else 2
    elif first == 0x62:
        level = 3
    elif first == 0x8F and mnemonic.startswith("v"):    # XOP shares 0x8F with POP r/m64
        level = BEYOND_LEVELS
    elif mnemonic in _COMMON:
        level = 0
    elif _V3.match(mnemonic):
        level = 2
    elif _V2.match(mnemonic):
        level = 1
    else:
        level = 0
    if level > member.level:
        member.level, member.level_example = level, text
    if ((mnemonic not in _COMMON and _PRIVILEGED.match(mnemonic))
            or (mnemonic == "mov" and "%" in operands and _CONTROL_REGISTER.search(operands))):
        member.hazards.append(f"privileged or system instruction `{text}`")
    if "%gs:" in operands:
        member.hazards.append(f"`{text}` uses %gs (the kernel's per-CPU record)")
    if "%fs" in operands:
        for match in _FS.finditer(operands):
            offset = int(match.group(1), 0) if match.group(1) else 0
            member.fs_offsets.add(offset)
            if offset not in TCB_OFFSETS:
                member.hazards.append(f"`{text}` reads %fs:{offset:#x}, a thread-local slot the TCB "
                                      "does not define")


def level_name(level):
    return LEVEL_NAMES[level] if level < len(LEVEL_NAMES) else "no x86-64 level"
