#!/usr/bin/env bash
# Install what BareFlow needs on a Debian/Ubuntu machine with Python 3.11+:
#  - Debian tools the build and tests use, when missing (qemu, syslinux, mtools, dosfstools, ovmf);
#  - a virtual environment .venv with the pinned Python packages (pyproject.toml) and pytest.
# Without root or sudo the Debian tools are left out with a warning; tests needing them skip.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "setup: Python 3.11 or newer is required (found $(python3 --version 2>&1))" >&2; exit 1; }

missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
{ command -v syslinux >/dev/null && [ -e /usr/lib/syslinux/mbr/mbr.bin ] &&
  [ -e /usr/lib/syslinux/modules/bios/mboot.c32 ]; } || missing+=(syslinux syslinux-common)
command -v mcopy >/dev/null || missing+=(mtools)
command -v fsck.fat >/dev/null || [ -x /usr/sbin/fsck.fat ] || missing+=(dosfstools)
[ -e /usr/share/ovmf/OVMF.fd ] || missing+=(ovmf)
[ -e /usr/lib/PXELINUX/pxelinux.0 ] || missing+=(pxelinux)        # the tftp flash target's PXE test
command -v objdump >/dev/null || missing+=(binutils)
# the fuzzer (tools/fuzz_campaign.py) builds with gcc's AddressSanitizer and UBSan runtimes
{ command -v gcc >/dev/null && gcc -print-file-name=libasan.so | grep -q /; } || missing+=(gcc libasan8 libubsan1)
# llama.cpp, the benchmarks' outside reference (tools/llamacpp.py builds it on first use, not here)
command -v cmake >/dev/null || missing+=(cmake)
command -v g++ >/dev/null || missing+=(g++)
[ -e /usr/lib/ipxe/qemu/efi-e1000.rom ] || [ -e /usr/lib/ipxe/qemu/pxe-e1000.rom ] || missing+=(ipxe-qemu)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""
    elif sudo -n true 2>/dev/null; then SUDO="sudo"
    elif command -v sudo >/dev/null && [ -t 0 ]; then SUDO="sudo"      # asks for the password
    else SUDO="none"; fi
    if [ "$SUDO" = none ]; then
        echo "setup: warning: cannot install ${missing[*]}: not root, and sudo is not usable here" \
             "(run this script as root, or with sudo from a terminal); tests needing them will skip" >&2
    else
        echo "setup: installing Debian packages: ${missing[*]}"
        $SUDO apt-get update -q
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
fi

# LLVM 22 from Debian's security archive (bookworm-security), the same LLVM release as zig's clang:
# llvm-22-dev (static archives and headers for JIT=llvm, docs/jit.md) and libllvmlibc-22-dev
# (LLVM's libc, the llvm-libc provider, docs/libc.md).  As root they are installed; otherwise the
# .debs are downloaded and unpacked into one cache, $BAREFLOW_LLVM_CACHE or
# ${BAREFLOW_CACHE:-~/.cache/bareflow}/llvm-22 (no root needed).  Each is skipped when present.
LLVM_JIT_CACHE="${BAREFLOW_LLVM_CACHE:-${BAREFLOW_CACHE:-$HOME/.cache/bareflow}/llvm-22}"
llvm_wanted=()
{ [ -e /usr/lib/llvm-22/lib/libLLVMCore.a ] || [ -e "$LLVM_JIT_CACHE/usr/lib/llvm-22/lib/libLLVMCore.a" ]; } ||
    llvm_wanted+=(llvm-22-dev)
{ [ -e /usr/lib/llvm-22/lib/libllvmlibc.a ] || [ -e "$LLVM_JIT_CACHE/usr/lib/llvm-22/lib/libllvmlibc.a" ]; } ||
    llvm_wanted+=(libllvmlibc-22-dev)
llvm_skips="JIT=llvm builds, the llvm-libc provider and their tests will skip"
if [ ${#llvm_wanted[@]} -eq 0 ]; then
    :
elif [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "setup: installing ${llvm_wanted[*]} (LLVM 22: static archives for JIT=llvm, LLVM's libc)"
    { $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q \
        --no-install-recommends "${llvm_wanted[@]}"; } ||
        echo "setup: warning: could not install ${llvm_wanted[*]}; $llvm_skips" >&2
elif command -v apt-get >/dev/null && command -v dpkg >/dev/null; then
    echo "setup: fetching ${llvm_wanted[*]} into $LLVM_JIT_CACHE (not root: apt-get download + dpkg -x)"
    tmp="$(mktemp -d)"
    rm -rf "$LLVM_JIT_CACHE.part"
    if [ -d "$LLVM_JIT_CACHE" ]; then cp -a "$LLVM_JIT_CACHE" "$LLVM_JIT_CACHE.part"; else mkdir -p "$LLVM_JIT_CACHE.part"; fi
    ok=1
    for pkg in "${llvm_wanted[@]}"; do
        if ! { (cd "$tmp" && apt-get download -q "$pkg" >/dev/null) &&
               dpkg -x "$tmp/${pkg}"_*.deb "$LLVM_JIT_CACHE.part"; }; then
            ok=0
            echo "setup: warning: could not download $pkg (is bookworm-security in the apt sources and" \
                 "apt-get update done?); $llvm_skips" >&2
        fi
    done
    if [ $ok = 1 ]; then rm -rf "$LLVM_JIT_CACHE" && mv "$LLVM_JIT_CACHE.part" "$LLVM_JIT_CACHE"
    else rm -rf "$LLVM_JIT_CACHE.part"; fi
    rm -rf "$tmp"
fi

python3 -c 'import ensurepip, venv' 2>/dev/null || {
    echo "setup: Python's venv module is missing (Debian package python3-venv); install it and run again" >&2
    exit 1; }
# A venv left without pip (created before python3-venv was installed) is rebuilt, not reused.
.venv/bin/python -m pip --version >/dev/null 2>&1 || { rm -rf .venv; python3 -m venv .venv; }
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
bash tools/fetch_vocabs.sh      # llama.cpp's tokenizer test vectors, cached outside the repository
# Real models for the tests and benchmarks, cached outside the repository (warns when offline).
.venv/bin/python tools/fetch_models.py
echo "setup: done (.venv ready)"
