/* stubs.c - every C library function LLVM 22 and libstdc++ reference that BareFlow does not provide.
 *
 * Promise: none of these does anything but stop the compile that reached it, through
 * bf_llvm_abort("stub <name> reached"), which the JIT reports naming the function (and counts,
 * so a run's result line shows how many stub calls happened).  The list is the set of symbols
 * `ld.lld` reports undefined when LLVM's archives (core, bitreader, passes, x86codegen, target,
 * analysis), libstdc++ and libgcc are linked with libc_llvm.c and heap.c; tests/test_jit_llvm.py
 * lists them and checks that the compiles of every layer at O0-O3 reach none.
 */
#include "llvm_platform.h"

#define STUB(name) \
    void name(void); \
    __attribute__((weak)) void name(void) { bf_llvm_stub_reached(#name); }


/* zlib and zstd (compression is never asked for) */
STUB(ZSTD_CCtx_setParameter) STUB(ZSTD_compress2) STUB(ZSTD_compressBound) STUB(ZSTD_createCCtx)
STUB(ZSTD_freeCCtx) STUB(ZSTD_isError) STUB(compress2) STUB(compressBound) STUB(crc32) STUB(uncompress)

/* strings, locale, wide characters, conversions */
STUB(__ctype_b_loc) STUB(__ctype_get_mb_cur_max) STUB(__ctype_tolower_loc) STUB(__ctype_toupper_loc)
STUB(__duplocale) STUB(__freelocale) STUB(__iswctype_l) STUB(__newlocale) STUB(__nl_langinfo_l)
STUB(__strcoll_l) STUB(__strftime_l) STUB(__strtod_l) STUB(__strtof_l) STUB(__strxfrm_l) STUB(__towlower_l)
STUB(__towupper_l) STUB(__uselocale) STUB(__wcscoll_l) STUB(__wcsftime_l) STUB(__wcsxfrm_l) STUB(__wctype_l)
STUB(bind_textdomain_codeset) STUB(btowc) STUB(dgettext) STUB(gettext) STUB(iconv) STUB(iconv_close)
STUB(iconv_open) STUB(isalnum) STUB(isalpha) STUB(isxdigit) STUB(mbrtowc) STUB(mbsnrtowcs) STUB(mbsrtowcs)
STUB(strerror) STUB(strerror_r) STUB(strftime) STUB(strsignal) STUB(strtod) STUB(strtol) STUB(strtold_l)
STUB(strtoll) STUB(strtoull) STUB(tolower) STUB(wcrtomb) STUB(wcscmp) STUB(wcslen) STUB(wcsnrtombs)
STUB(wctob) STUB(wmemchr) STUB(wmemcpy) STUB(wmemmove) STUB(wmemset)

/* threads and the C++ runtime */
STUB(__cxa_atexit) STUB(_dl_find_object) STUB(getauxval) STUB(pthread_sigmask)

/* files, processes, signals, dynamic loading */
STUB(access) STUB(alarm) STUB(chdir) STUB(closedir) STUB(dlclose) STUB(dlerror) STUB(dlopen) STUB(dlsym)
STUB(dup2) STUB(execv) STUB(execve) STUB(fcntl) STUB(fork) STUB(getcwd) STUB(getpid) STUB(getpwnam_r)
STUB(getpwuid_r) STUB(getrlimit) STUB(getrusage) STUB(getuid) STUB(kill) STUB(lstat) STUB(mallinfo2)
STUB(mkdir) STUB(mmap) STUB(munmap) STUB(open) STUB(opendir) STUB(posix_madvise) STUB(posix_spawn)
STUB(posix_spawn_file_actions_adddup2) STUB(posix_spawn_file_actions_addopen)
STUB(posix_spawn_file_actions_destroy) STUB(posix_spawn_file_actions_init) STUB(pread) STUB(raise) STUB(read)
STUB(readdir) STUB(readlink) STUB(realpath) STUB(remove) STUB(rint) STUB(setrlimit) STUB(setsid)
STUB(sigaction) STUB(sigaltstack) STUB(sigemptyset) STUB(sigfillset) STUB(sigprocmask) STUB(stat)
STUB(statfs) STUB(syscall) STUB(sysconf) STUB(unlink) STUB(wait) STUB(wait4)

/* maths (LLVM folds calls on constants; the layers pass none) */
STUB(acos) STUB(asin) STUB(atan) STUB(atan2) STUB(cos) STUB(cosh) STUB(erf) STUB(exp) STUB(feclearexcept)
STUB(fetestexcept) STUB(log) STUB(log10) STUB(log1p) STUB(log2) STUB(log2f) STUB(logb) STUB(logl)
STUB(nextafter) STUB(pow) STUB(sin) STUB(sinh) STUB(tan) STUB(tanh)

/* stdio, time, misc */
STUB(arc4random) STUB(clock_gettime) STUB(localtime_r) STUB(printf) STUB(putchar) STUB(qsort) STUB(time)
STUB(vsnprintf)

