"""Every repository path, bareflow module and relative link the docs name exists.

The docs (README.md, docs/*.md) point readers at files: `bareflow/image/fat16.py`,
`src/runtime/*.c`, `bareflow.policy.builtin`.  After files move, such pointers go stale
silently; this test finds them.  It reads text only and imports bareflow modules; it builds
nothing.

What counts as a path: a backticked token (outside fenced code blocks) that starts with one of
PATH_ROOTS.  A command line (`tools/bench_tiers.py --models 15M`) is checked by its first word;
a `path:line` or `path::name` suffix is dropped; `<placeholder>` parts and shell globs match
any name, `{a,b}` alternatives are each checked.  What counts as a module: a token that starts
with `bareflow.` (or `NAME=bareflow.`, `python -m bareflow.`) and is a dotted name, optionally
followed by a call; its longest importable prefix must be a module and the rest attributes of
it.  Names ending in a data file suffix (`bareflow.bmap`, the block map file) are file names.
A short file name (`fat16.py`, `flash/bmap.py`, `kmain.c`), given where the text has already
said which folder, must be the tail of some file in the repository unless it is another
project's file (OUTSIDE_FILES); `build/...` names are build outputs and not checked.
Relative Markdown link targets (`[x](blockmap.md)`) must exist beside the doc.
"""
import importlib
import os
import re
from pathlib import Path

from buildutil import ROOT

PATH_ROOTS = ("bareflow/", "src/", "modules/", "tools/", "tests/", "site_scons/", "examples/",
              "docs/", ".ci/")
# A file the build writes is named like a module: `bareflow.img`, `bareflow.bmap`.
FILE_SUFFIXES = {"img", "bmap", "bin", "cfg", "efi", "json", "txt", "md", "gguf"}

SOURCE_FILE = re.compile(r"^[\w./-]+\.(?:py|c|h|S|ld|cpp|sh|toml)$")
# Other projects' files the docs cite by name: llama2.c, ggml, the C headers of the compiler,
# and anything under another project's folder (`llama.cpp/src/unicode.cpp`, `llvm/Config/...`).
OUTSIDE_FILES = {"run.c", "ggml-common.h", "stdarg.h", "stdbool.h", "stddef.h", "stdint.h"}
OUTSIDE_PREFIXES = ("llama.cpp/", "llama2.c/", "llvm/")
SKIP_DIRS = {".git", ".venv", "build", "__pycache__", ".pytest_cache"}

LINK = re.compile(r"\]\(([^()\s]+)\)")
INLINE_CODE = re.compile(r"(`+)((?:(?!\n[ \t]*\n)[^`])+?)\1")
DOTTED = re.compile(r"bareflow(?:\.[A-Za-z_]\w*)+")
COMMAND_PREFIX = re.compile(r"^(?:[A-Z_]+=|(?:\S*/)?python3? -m )")


def doc_files():
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def prose_lines(path: Path):
    """The doc's lines with fenced code blocks blanked (line numbers stay right)."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            lines.append("")
        else:
            lines.append("" if fenced else line)
    return lines


def inline_code(path: Path):
    """(line number, token) for every inline code span outside fenced code blocks.

    A span may run over a line break (not over a blank line); its line number is where it starts.
    """
    text = "\n".join(prose_lines(path))
    for match in INLINE_CODE.finditer(text):
        yield text.count("\n", 0, match.start()) + 1, " ".join(match.group(2).split())


def expand_braces(text: str):
    """`a/{b,c}.py` -> [`a/b.py`, `a/c.py`] (one level, as the docs use it)."""
    match = re.search(r"\{([^{}]*)\}", text)
    if not match:
        return [text]
    return [out for alt in match.group(1).split(",")
            for out in expand_braces(text[:match.start()] + alt + text[match.end():])]


def path_exists(token: str) -> bool:
    word = token.split()[0]
    word = word.split(":")[0]
    word = re.sub(r"<[^<>]*>", "*", word)
    for candidate in expand_braces(word):
        candidate = candidate.rstrip("/") or candidate
        if any(ch in candidate for ch in "*?["):
            if not any(ROOT.glob(candidate)):
                return False
        elif not (ROOT / candidate).exists():
            return False
    return True


def module_name_exists(name: str) -> bool:
    """True if `name` is a module, or attributes of the longest importable prefix of it."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue  # this prefix is not a module; try a shorter one
            raise  # the module exists but imports something missing: a real error
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def repository_files():
    """Every file of the working tree as a posix path relative to ROOT (no .venv, no build)."""
    files = []
    for top, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        rel = Path(top).relative_to(ROOT)
        files += [(rel / name).as_posix() for name in names]
    return files


def short_name_exists(name: str, files) -> bool:
    if name in OUTSIDE_FILES or name.startswith(OUTSIDE_PREFIXES):
        return True
    return any(f == name or f.endswith("/" + name) for f in files)


def references():
    """(doc, line, kind, name) for every path, module name and link the docs mention."""
    for doc in doc_files():
        for number, line in enumerate(prose_lines(doc), 1):
            for match in LINK.finditer(INLINE_CODE.sub("", line)):
                target = match.group(1).split("#")[0]
                if target and ":" not in target:
                    yield doc, number, "link", target
        for number, token in inline_code(doc):
            if token.startswith(PATH_ROOTS):
                yield doc, number, "path", token
                continue
            word = token.split(":")[0]
            if SOURCE_FILE.match(word) and not word.startswith(("build/", "/", "../")):
                yield doc, number, "file", word
                continue
            stripped = COMMAND_PREFIX.sub("", token)
            match = DOTTED.match(stripped)
            if match and stripped[match.end():match.end() + 1] in ("", "("):
                name = match.group(0)
                if name.rsplit(".", 1)[1] not in FILE_SUFFIXES:
                    yield doc, number, "module", name


def test_docs_name_something():
    kinds = {kind for _, _, kind, _ in references()}
    assert kinds == {"path", "module", "file", "link"}, \
        f"the scanner found only {sorted(kinds)} in the docs: is it still reading them?"


def test_scanner_rules():
    assert path_exists("src/runtime/*.c")
    assert path_exists("tools/setup.sh --help")
    assert path_exists("bareflow/image/fat16.py:12")
    assert path_exists("src/libc/<area>/<symbol>.c")
    assert path_exists("bareflow/model/{checkpoint,tokenizer}.py")
    assert not path_exists("bareflow/model/{checkpoint,no_such_file}.py")
    assert not path_exists("bareflow/builtin/policies.py")
    assert module_name_exists("bareflow.image.fat16.epoch_from_environ")
    assert module_name_exists("bareflow.Variable")
    assert not module_name_exists("bareflow.bootconfig")
    assert not module_name_exists("bareflow.image.fat16.no_such_function")
    files = repository_files()
    assert short_name_exists("flash/bmap.py", files) and short_name_exists("kmain.c", files)
    assert not short_name_exists("builtin/syslinux.py", files)
    assert not short_name_exists("lash/bmap.py", files)


def test_docs_paths_exist():
    missing, files = [], repository_files()
    for doc, number, kind, name in references():
        if kind == "path":
            ok = path_exists(name)
        elif kind == "module":
            ok = module_name_exists(name)
        elif kind == "link":
            ok = (doc.parent / name).exists()
        else:
            ok = short_name_exists(name, files)
        if not ok:
            missing.append(f"{doc.relative_to(ROOT)}:{number}: {kind} `{name}` does not exist")
    assert not missing, f"{len(missing)} stale references in the docs:\n" + "\n".join(missing)
