"""The same runtime on bare metal: the real kernel + runtime + libc booted in QEMU (TCG).

The kernel is linked from src/kernel (kernel_recipe), src/runtime, src/libc and an export table
for the modules' imports; QEMU loads it with -kernel (multiboot) and the disk images come from
test_runtime_hosted.  QEMU's exit status is 33 for platform_exit(0) and 2n+1 for n.
"""
import functools
import json
import shutil
import tempfile
from pathlib import Path

import pytest

from bareflow.boot import qemu as qemu_runner
from bareflow.kernel import recipe as kernel_recipe

from bareflow.libc import selection as libc

from bareflow.modules import modformat

from bareflow.model import reference
from test_runtime_hosted import (REPO, base_files, config, make_image, module_files, needs_mtools, read_back,
                                 simple_policy, synthetic_model)

QEMU = shutil.which(qemu_runner.QEMU)
pytestmark = [pytest.mark.qemu, needs_mtools,
              pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed")]


@functools.lru_cache(maxsize=None)
def kernel():
    work = Path(tempfile.mkdtemp(prefix="bf-rt-kernel-"))
    imports = sorted({n for data in module_files().values() for n in modformat.parse(data).imports})
    (work / "exports.c").write_text(libc.exports_source(imports))
    sources = [REPO / s for s in kernel_recipe.KERNEL_SOURCES] + sorted((REPO / "src/runtime").glob("*.c")) + \
        sorted((REPO / "src/jit/none").glob("*.c")) + sorted((REPO / "src/libc").glob("*/*.c")) + [work / "exports.c"]
    objs = []
    for i, src in enumerate(sources):
        obj = work / f"{i:02d}_{src.stem}.o"
        kernel_recipe.compile_object(str(src), str(obj), repo_root=str(REPO))
        objs.append(str(obj))
    out = work / "KERNEL.BIN"
    kernel_recipe.link_kernel(objs, str(work / "kernel.elf"), str(out), str(REPO / "src/kernel/kernel.ld"))
    return out


def boot(*args):
    run = qemu_runner.run_qemu(qemu_runner.qemu_command(kernel=kernel(), extra=args), timeout=120)
    return run.status, run.output


def last_line(out, prefix):
    lines = out.splitlines()
    assert lines and lines[-1].startswith(prefix), out[-2000:]
    return lines[-1][len(prefix):]


def test_kernel_generates_from_the_disk_and_writes_the_profile(tmp_path):
    policy = simple_policy()
    policy[1] = ("rmsnorm", ["O0", "O2"], [20], [], 0)
    image = make_image(tmp_path / "disk.img", base_files(policy=policy, cfg=config(steps=12)))
    code, out = boot("-drive", f"file={image},format=raw,if=ide")
    assert code == 33, out[-3000:]
    result = json.loads(last_line(out, "BAREFLOW-RESULT "))
    m, t = synthetic_model()
    assert result["tokens"] == reference.generate(m, t, "Once upon a time", 12)["tokens"]
    assert result["layers"]["rmsnorm"]["changes"] == [{"call": 20, "from": "O0", "to": "O2"}]
    profile = read_back(image, "/PROFILE.BIN")
    assert profile[:4] == b"BFPR" and profile[6] == 9


def test_kernel_runs_from_handed_files_without_a_disk(tmp_path):
    handed = tmp_path / "handed"
    for name, data in base_files(cfg=config(steps=8)).items():
        path = handed / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    initrd = ",".join(str(p) for p in sorted(handed.rglob("*")) if p.is_file())
    code, out = boot("-initrd", initrd)
    assert code == 33, out[-3000:]
    assert "warning: /PROFILE.BIN not written: no FAT16 disk" in out
    assert json.loads(last_line(out, "BAREFLOW-RESULT "))["tokens"]


def test_kernel_panics_with_exit_code_1(tmp_path):
    files = base_files()
    data = bytearray(files["/MODULES/FFN.O0"])
    data[70] ^= 1
    files["/MODULES/FFN.O0"] = bytes(data)
    image = make_image(tmp_path / "disk.img", files)
    code, out = boot("-drive", f"file={image},format=raw,if=ide")
    assert code == 3, out[-3000:]
    assert last_line(out, "BAREFLOW-PANIC: ").startswith("module /MODULES/FFN.O0: crc32")
