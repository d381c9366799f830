"""libc subset selection: build and package only the libc the modules and the kernel need.

Providers (registered by plugins through `bareflow_register_libc_providers`) say which symbols
they define and hand out an object (and optionally bitcode) for each.  The selection starts from
the symbols the tier objects and the kernel leave undefined, asks the providers in priority
order, follows what each chosen object needs in turn (the transitive closure), and reports every
symbol no provider has together with the modules that need it.
"""
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from bareflow.modules import elfcheck

from bareflow.bitcode import toolchain
from bareflow.errors import BareflowError


class LibcProvider:
    """Base class for libc providers; see docs/libc.md.

    name/description: shown by `scons plugins`.  priority: lower is asked first.
    kind: "source" (compiled by the build), "object" (prebuilt objects) or "bitcode".
    """
    name = "unnamed"
    description = ""
    priority = 100
    kind = "object"

    def symbols(self):
        """Return {symbol: origin} for every function this provider can supply."""
        raise NotImplementedError

    def object_for(self, symbol, workdir, verbose=False):
        """Return ELF relocatable bytes defining `symbol` (x86-64, freestanding)."""
        raise NotImplementedError

    def bitcode_for(self, symbol, workdir, verbose=False):
        """Return LLVM bitcode defining `symbol`, or None if this provider has none."""
        return None

    def dependencies(self):
        """Files whose change must redo the selection (sources, archives)."""
        return []


def ordered_providers(pm) -> list:
    """Every registered LibcProvider, sorted by `priority` (lower first), then name."""
    providers = []
    for reg in pm.registrations("bareflow_register_libc_providers"):
        priority = getattr(reg.obj, "priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, (int, float)):
            raise BareflowError(f"plugin {reg.plugin!r}: libc provider {reg.name!r} has "
                                f"priority {priority!r}; it must be a number")
        providers.append((priority, reg.name, reg.obj))
    return [obj for _, _, obj in sorted(providers, key=lambda t: (t[0], t[1]))]


@dataclass
class Selected:
    symbol: str
    provider: str
    size: int
    needed_by: set = field(default_factory=set)
    object_key: str = ""
    kind: str = "STT_FUNC"      # the ELF symbol type of its definition


@dataclass
class Selection:
    symbols: dict          # symbol -> Selected
    objects: dict          # object key -> bytes (each chosen object once)

    def manifest(self):
        return [{"symbol": s.symbol, "provider": s.provider, "size": s.size,
                 "needed_by": sorted(s.needed_by)} for s in sorted(self.symbols.values(),
                                                                   key=lambda s: s.symbol)]

    def manifest_text(self):
        lines = ["# BareFlow libc manifest: symbol provider size needed-by",
                 f"# {len(self.symbols)} symbols, {sum(s.size for s in self.symbols.values())} bytes"]
        for row in self.manifest():
            lines.append(f"{row['symbol']} {row['provider']} {row['size']} {','.join(row['needed_by'])}")
        return "\n".join(lines) + "\n"


def select(requirements, providers, workdir, verbose=False, program_defines=()):
    """Resolve `requirements` ({symbol: {requirer, ...}}) against `providers`.

    `program_defines`: symbols the program linked with the libc defines itself (the runtime's
    `__errno_location`, say): a chosen object may need them without any provider.
    Returns a Selection.  Raises BareflowError listing every symbol no provider defines and who
    needs it.
    """
    program_defines = set(program_defines)
    providers = sorted(providers, key=lambda p: (p.priority, p.name))
    tables = [(p, p.symbols()) for p in providers]
    chosen, objects, missing = {}, {}, {}
    pending = sorted(requirements)
    needers = {sym: set(req) for sym, req in requirements.items()}
    while pending:
        sym = pending.pop(0)
        if sym in chosen:
            chosen[sym].needed_by |= needers[sym]
            continue
        provider = next((p for p, table in tables if sym in table), None)
        if provider is None:
            missing[sym] = needers[sym]
            continue
        data = provider.object_for(sym, workdir, verbose)
        key = f"{provider.name}:{hashlib.sha256(data).hexdigest()[:16]}"
        obj = elfcheck.read_object(data, f"libc provider {provider.name} object for {sym}")
        defined = obj.global_definitions()
        if sym not in defined:
            raise BareflowError(f"libc provider {provider.name}: its object for {sym!r} does not define it")
        objects.setdefault(key, data)
        chosen[sym] = Selected(sym, provider.name, defined[sym].size, set(needers[sym]), key,
                               defined[sym].kind)
        for other, definition in defined.items():   # an object may define several symbols
            if other != sym and other in needers and other not in chosen:
                chosen[other] = Selected(other, provider.name, definition.size, set(needers[other]), key,
                                         definition.kind)
        for dep in obj.undefined_names():
            if dep in defined or dep in program_defines:
                continue
            needers.setdefault(dep, set()).add(f"libc:{sym}")
            if dep in chosen:
                chosen[dep].needed_by.add(f"libc:{sym}")
            elif dep not in pending:
                pending.append(dep)
    if missing:
        lines = [f"  {sym}: needed by {', '.join(sorted(req))}" for sym, req in sorted(missing.items())]
        raise BareflowError("unresolved symbols: no libc provider defines them "
                            f"(providers: {', '.join(p.name for p in providers) or 'none'}):\n"
                            + "\n".join(lines))
    return Selection(chosen, objects)


MODULE_REQUIRER = "module:"        # prefix of the requirer names the build gives layer modules


def module_imports(selection):
    """The selected symbols some layer module needs: the functions the kernel exports.

    A module reaches an import through a jump stub (docs/module-format.md), so a data symbol
    would silently read the stub's code bytes: it is an error naming symbol, provider and modules.
    """
    imports, data = set(), []
    for sym, sel in sorted(selection.symbols.items()):
        modules = sorted(r for r in sel.needed_by if r.startswith(MODULE_REQUIRER))
        if not modules:
            continue
        if sel.kind in ("STT_OBJECT", "STT_TLS"):
            data.append(f"  {sym} ({sel.kind} from {sel.provider}): needed by {', '.join(modules)}")
        imports.add(sym)
    if data:
        raise BareflowError("modules can import only functions, but these are data:\n" + "\n".join(data))
    return imports


def combine_objects(paths, out, verbose=False):
    """One relocatable object `out` from the selected libc objects (ld.lld -r); empty when none."""
    if not paths:
        with open(out, "wb"):
            return
    toolchain.run(toolchain.LD_LLD + ["-r", "--build-id=none", "-o", out + ".tmp"] + list(paths),
                  what="combining the libc subset", verbose=verbose)
    os.replace(out + ".tmp", out)


def bitcode_resolver(providers, workdir, verbose=False):
    """name -> bitcode (or None), asking providers in priority order: the one that would supply
    the symbol as an object supplies its bitcode, if it has any, for LIBC_INLINE."""
    providers = sorted(providers, key=lambda p: (p.priority, p.name))

    def resolve(name):
        for provider in providers:
            if name in provider.symbols():
                return provider.bitcode_for(name, workdir, verbose)
        return None
    return resolve


def undefined_requirements(named_objects, provided=()):
    """{symbol: {requirer}} from [(requirer, object bytes)], minus what those objects define.

    `provided` names symbols that come from elsewhere at link time (linker-script symbols, the
    generated export table) and so need no libc provider.
    """
    defined, wanted = set(provided), {}
    for requirer, data in named_objects:
        obj = elfcheck.read_object(data, requirer)
        defined |= set(obj.global_definitions())
        for sym in obj.undefined_names():
            wanted.setdefault(sym, set()).add(requirer)
    return {sym: req for sym, req in wanted.items() if sym not in defined}


def definitions(named_objects, provided=()):
    """Every global symbol the objects [(requirer, bytes)] define, plus `provided`."""
    defined = set(provided)
    for requirer, data in named_objects:
        defined |= set(elfcheck.read_object(data, requirer).global_definitions())
    return defined


_LINKER_ASSIGNMENT = re.compile(r"(?:PROVIDE(?:_HIDDEN)?\s*\(\s*)?\b([A-Za-z_][A-Za-z0-9_]*)\s*=[^=]")


def linker_script_symbols(text):
    """Symbols a GNU ld-style linker script defines (`name = expr;`, PROVIDE(name = expr))."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return {m.group(1) for m in _LINKER_ASSIGNMENT.finditer(text) if m.group(1) != "."}


EXPORT_TABLE_SYMBOLS = {"bf_exports", "bf_export_count"}


def exports_source(symbols):
    """C source of the kernel's export table for `symbols` (sorted, so the output is stable)."""
    names = sorted(symbols)
    lines = ["/* Generated by bareflow.libc.selection: the functions modules may import. */",
             '#include "bareflow/exports.h"', ""]
    lines += [f"extern void {name}(void);" for name in names]
    lines += ["", "const struct bf_export bf_exports[] = {"]
    lines += [f'    {{"{name}", (void *){name}}},' for name in names]
    if not names:
        lines.append('    {"", (void *)0},')
    lines += ["};", f"const unsigned bf_export_count = {len(names)};", ""]
    return "\n".join(lines)


class ProjectLibc(LibcProvider):
    """The project's freestanding libc: one function per file under src/libc/<area>/<symbol>.c."""
    name = "bareflow-libc"
    description = "the project's own freestanding libc (src/libc, one function per file)"
    priority = 50
    kind = "source"

    def __init__(self, root, cflags):
        self.root = Path(root)
        self.cflags = list(cflags)
        self._index = None

    def symbols(self):
        if self._index is None:
            self._index = {}
            for path in sorted(self.root.glob("*/*.c")):
                if path.stem in self._index:
                    raise BareflowError(f"libc: {path} and {self._index[path.stem]} both define {path.stem}")
                self._index[path.stem] = path
        return dict(self._index)

    def dependencies(self):
        return sorted(self.symbols().values()) + sorted(self.root.glob("**/*.h"))

    def _compile(self, symbol, workdir, extra, suffix, verbose):
        src = self.symbols()[symbol]
        cmd = toolchain.CC + self.cflags + extra + ["-I", str(self.root / "include"), "-c", str(src)]
        key = json.dumps(cmd).encode() + src.read_bytes() + self._headers_digest()
        digest = hashlib.sha256(key).hexdigest()[:20]
        out = Path(workdir) / f"{symbol}-{digest}{suffix}"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(out.suffix + ".tmp")
            toolchain.run(cmd + ["-o", str(tmp)], what=f"compiling libc {src}", verbose=verbose)
            tmp.replace(out)
        return out.read_bytes()

    def _headers_digest(self):
        """Any libc header may reach any libc source, so all of them key the object cache."""
        digest = hashlib.sha256()
        for header in sorted(self.root.glob("**/*.h")):
            digest.update(str(header.relative_to(self.root)).encode() + b"\0" + header.read_bytes())
        return digest.digest()

    def object_for(self, symbol, workdir, verbose=False):
        return self._compile(symbol, workdir, ["-O2"], ".o", verbose)

    def bitcode_for(self, symbol, workdir, verbose=False):
        return self._compile(symbol, workdir, toolchain.BITCODE_CFLAGS, ".bc", verbose)
