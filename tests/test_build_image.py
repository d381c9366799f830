"""`scons image`: the disk image as independent tools see it (fsck.fat, mtools) and as SCons users expect."""
import hashlib
import subprocess

import pytest

from bareflow.image.payload import plugin_image_files
from bareflow.model import layers, synthetic

from bareflow.modules import modformat

from bareflow.policy import table as policytable

from bareflow.policy import profile

from bareflow.tiers import compile as tiers
from buildutil import PARTITION_OFFSET, image_file, need, scons, tool


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_partition_passes_fsck(default_build, tmp_path):
    need("fsck.fat")
    part = tmp_path / "part.img"
    part.write_bytes(default_build.image.read_bytes()[PARTITION_OFFSET:])
    proc = subprocess.run([tool("fsck.fat"), "-n", str(part)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_file_reads_back_with_mtools(default_build):
    b = default_build.dir
    expected = {
        "/KERNEL.BIN": b / "kernel" / "KERNEL.BIN",
        "/MODEL.BIN": b / "model" / "SYNTH.BIN",
        "/TOKENIZR.BIN": b / "image" / "TOKENIZR.BIN",
        "/POLICY.TBL": b / "gen" / "POLICY.TBL",
        "/BAREFLOW.CFG": b / "image" / "BAREFLOW.CFG",
        "/PROFILE.BIN": b / "gen" / "PROFILE.BIN",
        "/LIBC.MAN": b / "libc" / "LIBC.MAN",
    }
    for module in sorted((b / "modules" / "x86-64").iterdir()):
        expected[f"/MODULES/{module.name}"] = module
    for path, source in expected.items():
        assert image_file(default_build.image, path) == source.read_bytes(), path


def test_policy_table_ladders_match_the_packaged_tiers(default_build):
    table = policytable.decode(image_file(default_build.image, "/POLICY.TBL"))
    packaged = sorted(p.name for p in (default_build.dir / "modules" / "x86-64").iterdir())
    wanted = sorted(f"{name.upper()}.{tier}" for name, entry in table.items() for tier in entry.ladder)
    assert packaged == wanted
    assert list(table) == list(layers.LAYER_NAMES)
    # the default policy climbs: every layer has at least two tiers
    assert all(len(entry.ladder) >= 2 for entry in table.values())
    for name in packaged:
        info = modformat.parse((default_build.dir / "modules" / "x86-64" / name).read_bytes())
        assert f"{info.layer.upper()}.{info.tier}" == name and info.isa == "x86-64"


def test_fixed_o3_packages_only_o3(tmp_path):
    scons(tmp_path, "image", "POLICY=fixed", "TIER=O3")
    modules = sorted(p.name for p in (tmp_path / "modules" / "x86-64").iterdir())
    assert modules and all(m.endswith(".O3") for m in modules)
    assert len(modules) == len(layers.LAYER_NAMES)
    table = policytable.decode(image_file(tmp_path / "bareflow.img", "/POLICY.TBL"))
    assert all(entry.ladder == ["O3"] for entry in table.values())


def test_libc_manifest_lists_only_what_is_needed(default_build):
    manifest = image_file(default_build.image, "/LIBC.MAN").decode()
    rows = {line.split()[0]: line.split() for line in manifest.splitlines() if not line.startswith("#")}
    assert "expf" in rows and "module" in rows["expf"][3]
    assert "memcpy" in rows
    assert "tanhf" not in rows        # in src/libc, but nothing calls it
    assert int(rows["expf"][2]) > 0


def test_empty_profile_is_preallocated(default_build):
    data = image_file(default_build.image, "/PROFILE.BIN")
    assert len(data) == 4096
    empty = profile.decode_profile(data)
    assert not empty.layers and empty.tokens == 0


def test_two_clean_builds_are_byte_identical(default_build, tmp_path):
    scons(tmp_path, "image", "-j2")
    assert _sha(tmp_path / "bareflow.img") == _sha(default_build.image)
    assert (tmp_path / "bareflow.bmap").read_bytes() == (default_build.dir / "bareflow.bmap").read_bytes()


def test_source_date_epoch_is_honoured(default_build, tmp_path):
    scons(tmp_path, "image", env={"SOURCE_DATE_EPOCH": "1767225600"})
    assert _sha(tmp_path / "bareflow.img") != _sha(default_build.image)


def test_help_lists_variables_with_defaults(tmp_path):
    out = scons(tmp_path, "-h").stdout
    for variable in ("MODEL", "TOKENIZER", "POLICY", "TIER", "ISA", "PROFILE", "PROMPT", "STEPS", "VERBOSE"):
        assert f"\n  {variable}: " in out
    assert "default: 'tiered'" in out


def test_plugins_lists_policies_and_providers(tmp_path):
    out = scons(tmp_path, "plugins").stdout
    for word in ("tiered", "fixed", "pgo", "bareflow-libc", "syslinux", "raw", "bareflow_register_policies"):
        assert word in out


def test_clean_removes_outputs(tmp_path):
    scons(tmp_path, "image")
    assert (tmp_path / "bareflow.img").exists()
    assert list((tmp_path / "modules").rglob("*.O*")) and (tmp_path / "kernel" / "KERNEL.BIN").exists()
    scons(tmp_path, "-c", "image")
    assert not (tmp_path / "bareflow.img").exists()
    assert not list((tmp_path / "modules").rglob("*.O*"))
    assert not (tmp_path / "kernel" / "KERNEL.BIN").exists()


def test_v3_isa_builds_avx_modules(tmp_path):
    scons(tmp_path, "image", "ISA=x86-64-v3", "POLICY=fixed", "TIER=O2")
    names = sorted((tmp_path / "modules" / "x86-64-v3").iterdir())
    assert len(names) == len(layers.LAYER_NAMES)
    assert all(modformat.parse(p.read_bytes()).isa == "x86-64-v3" for p in names)
    # The packaged objects are what the v3 pipeline emits, and that pipeline really uses AVX.
    for layer in ("ffn", "attn"):
        bc = (tmp_path / "bc" / f"{layer}.bc").read_bytes()
        built = (tmp_path / "tiers" / "x86-64-v3" / f"{layer}.O2.o").read_bytes()
        assert built == tiers.compile_tier(bc, "O2", "x86-64-v3", module_name=layer), layer
        assert tiers.count_avx_instructions(tiers.assembly(bc, "O2", "x86-64-v3")) > 0, layer


def test_libc_inline_links_bitcode_into_modules(default_build, tmp_path):
    """LIBC_INLINE=yes: expf & co. are linked into the modules before tiering, so the modules
    import nothing, the kernel's libc subset shrinks, and the tokens do not change."""
    from buildutil import hosted, result
    scons(tmp_path, "image", "hosted", "LIBC_INLINE=yes", "POLICY=fixed", "TIER=O3")
    for module in (tmp_path / "modules" / "x86-64").iterdir():
        assert modformat.parse(module.read_bytes()).imports == [], module.name
    manifest = (tmp_path / "libc" / "LIBC.MAN").read_text()
    assert "\nexpf " not in manifest and "\nmemcpy " in manifest
    inline_img, plain_img = tmp_path / "inline.img", tmp_path / "plain.img"
    inline_img.write_bytes((tmp_path / "bareflow.img").read_bytes())
    plain_img.write_bytes(default_build.image.read_bytes())
    inline = result(hosted(tmp_path / "bareflow-hosted", inline_img)[1])
    plain = result(hosted(default_build.hosted, plain_img)[1])
    assert inline["tokens"] == plain["tokens"]


def test_one_line_per_step_by_default_full_commands_with_verbose(tmp_path):
    quiet = scons(tmp_path / "q", "image").stdout
    assert "  BC       " in quiet and "  TIER     " in quiet and "ziglang" not in quiet
    loud = scons(tmp_path / "v", "image", "VERBOSE=1").stdout
    assert "-m ziglang cc" in loud and "-disable-llvm-passes" in loud and "tier(BF_LAYER=" in loud


def test_plugins_add_files_to_the_image(tmp_path):
    import os
    (tmp_path / "extrafiles.py").write_text(
        "import os\n"
        "from bareflow import hookimpl\n"
        "@hookimpl\n"
        "def bareflow_image_files(variables, files):\n"
        "    files['/EXTRA/README.TXT'] = b'flashed by ' + variables['POLICY'].encode() + b'\\n'\n"
        "    if os.environ.get('EXTRAFILES_BAD_NAME') == '1':\n"
        "        files['/this-name-is-far-too-long.text'] = b'x'\n")
    env = {"PYTHONPATH": str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    scons(tmp_path / "b", "image", "PLUGINS=extrafiles", env=env)
    assert image_file(tmp_path / "b" / "bareflow.img", "/EXTRA/README.TXT") == b"flashed by tiered\n"
    bad = scons(tmp_path / "c", "image", "PLUGINS=extrafiles", env=dict(env, EXTRAFILES_BAD_NAME="1"),
                check=False)
    assert bad.returncode != 0 and "this-name-is-far-too-long.text" in bad.stdout
    assert "plugin 'extrafiles'" in bad.stdout


def test_a_wrapper_on_image_files_is_refused_not_skipped():
    from bareflow import hookimpl
    from bareflow.errors import BareflowError
    from bareflow.core.manager import BareflowPluginManager

    class Plain:
        @hookimpl
        def bareflow_image_files(self, files):
            files["/PLAIN.TXT"] = b"p"

    class Wrapping:
        @hookimpl(wrapper=True)
        def bareflow_image_files(self, files):
            files["/WRAP.TXT"] = b"w"
            return (yield)

    pm = BareflowPluginManager()
    pm.register(Plain(), "plain")
    assert plugin_image_files(pm, {}, {}) == {"/PLAIN.TXT": b"p"}
    with pytest.raises(BareflowError, match="plugin 'wrapping': hook bareflow_image_files cannot be "
                                            "implemented as a wrapper"):
        pm.register(Wrapping(), "wrapping")
    assert plugin_image_files(pm, {}, {}) == {"/PLAIN.TXT": b"p"}


def test_a_plugin_replaces_builtin_files_and_flags_the_way_the_builtins_set_them(tmp_path, monkeypatch):
    """The payload and the module cflags come from built-in plugins on the public hooks, so a
    later plugin sees what they set and can replace any of it."""
    from bareflow.bitcode.toolchain import FREESTANDING_CFLAGS
    from bareflow.core.manager import load_plugins
    (tmp_path / "replacer.py").write_text(
        "def bareflow_module_cflags(module, cflags):\n"
        "    assert cflags[:2] == ['-target', 'x86_64-freestanding'], cflags\n"
        "    cflags.remove('-ffp-contract=off')\n"
        "def bareflow_image_files(files, products):\n"
        "    assert files['/KERNEL.BIN'] == products['kernel']\n"
        "    files['/KERNEL.BIN'] = b'my kernel'\n"
        "    del files['/LIBC.MAN']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    pm = load_plugins({"PLUGINS": "replacer"}, entry_points=False, environ={})
    flags = []
    pm.hook.bareflow_module_cflags(module="qkv", cflags=flags, variables={})
    assert flags == [f for f in FREESTANDING_CFLAGS if f != "-ffp-contract=off"]
    products = {"kernel": "/b/KERNEL.BIN", "libc_manifest": "/b/LIBC.MAN", "model": "/b/M.BIN",
                "tokenizer": "/b/T.BIN", "policy_table": "/b/P.TBL", "profile": "/b/PROFILE.BIN",
                "modules": {"/MODULES/QKV.O2": "/b/QKV.O2"}, "model_config": synthetic.CONFIG}
    files = plugin_image_files(pm, {"PROMPT": "hi", "STEPS": "8", "TEMPERATURE": "0", "TOPP": "0.9",
                                    "SEED": "1"}, products)
    assert files["/KERNEL.BIN"] == b"my kernel" and "/LIBC.MAN" not in files
    assert files["/MODEL.BIN"] == "/b/M.BIN" and files["/MODULES/QKV.O2"] == "/b/QKV.O2"
    assert b"prompt = hi\n" in files["/BAREFLOW.CFG"]


def test_policy_decides_per_isa_level(tmp_path):
    """ISA lists two levels: the policy is asked once per level, sees both in LayerInfo, and
    each level gets its own table entries and module files (QKV.O1 vs QKV.O33)."""
    import os
    from bareflow.policy import table as policytable
    (tmp_path / "perlevel.py").write_text(
        "from bareflow import hookimpl\n"
        "from bareflow import Decision, Policy\n"
        "def decide(layer, variables):\n"
        "    assert layer.isa_levels == ('x86-64', 'x86-64-v3'), layer.isa_levels\n"
        "    return Decision(['O1'] if layer.isa == 'x86-64' else ['O3'])\n"
        "@hookimpl\n"
        "def bareflow_register_policies():\n"
        "    return [Policy('perlevel', 'O1 on x86-64, O3 on x86-64-v3', decide)]\n")
    env = {"PYTHONPATH": str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = scons(tmp_path / "b", "image", "PLUGINS=perlevel", "POLICY=perlevel", "ISA=x86-64-v3,x86-64",
                env=env).stdout
    assert "policy perlevel (x86-64):" in out and "policy perlevel (x86-64-v3):" in out
    image = tmp_path / "b" / "bareflow.img"
    levels = policytable.decode_levels(image_file(image, "/POLICY.TBL"))
    assert list(levels) == ["x86-64", "x86-64-v3"]
    assert {d.ladder[0] for d in levels["x86-64"].values()} == {"O1"}
    assert {d.ladder[0] for d in levels["x86-64-v3"].values()} == {"O3"}
    assert image_file(image, "/MODULES/QKV.O1")[25] == 0       # BFMD isa byte
    assert image_file(image, "/MODULES/QKV.O33")[25] == 2
    bad = scons(tmp_path / "c", "image", "ISA=x86-64,x86-64-v5", check=False)
    assert bad.returncode != 0 and "unknown ISA level 'x86-64-v5'" in bad.stdout
