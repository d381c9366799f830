"""Every bad input stops bareflow-hosted with a BAREFLOW-PANIC line naming the culprit, exit 1.

Each case starts from the good image of test_runtime_hosted, breaks one thing, and checks the
panic message fragment that names the file and field.  A hang would hit the subprocess timeout
and fail the test.
"""
import struct

import pytest

from bareflow_plugins import modformat, tiers, toolchain
from test_runtime_hosted import (LAYERS, PART_LBA, PRELOAD, base_files, config, expect_panic, make_image,
                                 needs_mtools, policy_table, recrc_module, run_image, simple_policy)

pytestmark = needs_mtools


def patched(data, offset, fmt, *values):
    data = bytearray(data)
    struct.pack_into(fmt, data, offset, *values)
    return bytes(data)


def module_with_import(files):
    for name, data in sorted(files.items()):
        if name.startswith("/MODULES/") and modformat.parse(data).imports:
            return name, data
    pytest.skip("no module imports a function")


def module_with_relocs(files):
    for name, data in sorted(files.items()):
        if name.startswith("/MODULES/") and modformat.parse(data).relocs:
            return name, data
    pytest.skip("no module has relocations")


def set_module(files, name, data):
    files[name] = data
    return files


# ---- module files

def case_module_crc(f):
    data = bytearray(f["/MODULES/QKV.O0"])
    data[64 + 10] ^= 0x40
    return set_module(f, "/MODULES/QKV.O0", bytes(data)), "module /MODULES/QKV.O0: crc32"


def case_module_magic(f):
    return set_module(f, "/MODULES/EMBED.O0", b"BFMX" + f["/MODULES/EMBED.O0"][4:]), \
        'module /MODULES/EMBED.O0: bad magic 42 46 4d 58, expected "BFMD"'


def case_module_unknown_import(f):
    name, data = module_with_import(f)
    info = modformat.parse(data)
    at = len(data) - 32 * len(info.imports)
    data = patched(data, at, "32s", b"no_such_function")
    return set_module(f, name, recrc_module(data)), \
        f"module {name}: layer {info.layer} tier {info.tier} imports 'no_such_function', which the kernel does not export"


def case_module_wrong_layer(f):
    return set_module(f, "/MODULES/QKV.O0", f["/MODULES/ROPE.O0"]), \
        "module /MODULES/QKV.O0: holds layer 'rope', expected 'qkv'"


def case_module_wrong_tier(f):
    return set_module(f, "/MODULES/EMBED.O0", f["/MODULES/EMBED.O2"]), \
        "module /MODULES/EMBED.O0: holds tier O2, the file name says O0"


def case_module_abi(f):
    return set_module(f, "/MODULES/FFN.O0", recrc_module(patched(f["/MODULES/FFN.O0"], 26, "<H", 7))), \
        "module /MODULES/FFN.O0: abi_version 7"


def case_module_entry_outside_code(f):
    data = f["/MODULES/ATTN.O0"]
    text = struct.unpack_from("<I", data, 44)[0]
    return set_module(f, "/MODULES/ATTN.O0", recrc_module(patched(data, 40, "<I", text))), \
        "module /MODULES/ATTN.O0: entry_offset"


def case_module_reloc_outside_image(f):
    name, data = module_with_relocs(f)
    info = modformat.parse(data)
    data = patched(data, 64 + info.file_image_size, "<I", info.image_size - 4)
    return set_module(f, name, recrc_module(data)), f"module {name}: relocation 0 patches offset"


def case_module_truncated(f):
    return set_module(f, "/MODULES/CLASSIFY.O0", f["/MODULES/CLASSIFY.O0"][:-5]), \
        "module /MODULES/CLASSIFY.O0: file_size field"


def case_module_isa_v3(f):
    return set_module(f, "/MODULES/SAMPLER.O0", recrc_module(patched(f["/MODULES/SAMPLER.O0"], 25, "B", 1))), \
        "module /MODULES/SAMPLER.O0: built for x86-64-v3"


def case_module_layer_field(f):
    return set_module(f, "/MODULES/ROPE.O0", recrc_module(patched(f["/MODULES/ROPE.O0"], 8, "16s", b"ROPE"))), \
        "module /MODULES/ROPE.O0: layer field is not 1-15 characters"


# ---- policy table

def with_policy(f, entries):
    f["/POLICY.TBL"] = policy_table(entries)
    return f


def replaced(layer, entry):
    entries = simple_policy()
    entries[LAYERS.index(layer)] = entry
    return entries


def case_policy_bad_ladder(f):
    return with_policy(f, replaced("qkv", ("qkv", ["O2", "O1"], [4], [], 0))), \
        "policy /POLICY.TBL: layer 'qkv': ladder is not strictly increasing (ladder[1] = O1 after O2)"


def case_policy_unknown_layer(f):
    return with_policy(f, simple_policy() + [("softmax", ["O0"], [], [], 0)]), \
        "policy /POLICY.TBL: entry 9 names unknown layer 'softmax'"


def case_policy_missing_layer(f):
    return with_policy(f, [e for e in simple_policy() if e[0] != "rope"]), \
        "policy /POLICY.TBL: layer 'rope' has no entry"


def case_policy_duplicate_layer(f):
    return with_policy(f, simple_policy() + [("ffn", ["O1"], [], [], 0)]), \
        "policy /POLICY.TBL: layer 'ffn' has two entries (6 and 9)"


def case_policy_crc(f):
    data = bytearray(policy_table(simple_policy()))
    data[16 + 64 * 2 + 20] = 2
    f["/POLICY.TBL"] = bytes(data)
    return f, "policy /POLICY.TBL: crc32"


def case_policy_no_trigger(f):
    return with_policy(f, replaced("embed", ("embed", ["O0", "O2"], [0], [0], 0))), \
        "policy /POLICY.TBL: layer 'embed': step 0 (O0 -> O2) has neither a call nor a cycle trigger"


def case_policy_flags(f):
    return with_policy(f, replaced("attn", ("attn", ["O0"], [], [], 8))), \
        "policy /POLICY.TBL: layer 'attn': flags 0x08"


def case_policy_missing_on_demand_module(f):
    del f["/MODULES/EMBED.O2"]
    return with_policy(f, replaced("embed", ("embed", ["O0", "O2"], [3], [], 0))), \
        "policy /POLICY.TBL: layer 'embed' climbs to O2 but /MODULES/EMBED.O2 is missing"


def case_policy_missing_preloaded_module(f):
    del f["/MODULES/EMBED.O2"]
    return with_policy(f, replaced("embed", ("embed", ["O0", "O2"], [3], [], PRELOAD))), \
        "file /MODULES/EMBED.O2: not found (disk: /MODULES/EMBED.O2: 'EMBED.O2' not found"


# ---- configuration

def with_config(f, text):
    f["/BAREFLOW.CFG"] = text
    return f


def case_config_unknown_key(f):
    return with_config(f, config() + b"colour = red\n"), "BAREFLOW.CFG line 7: unknown key 'colour'"


def case_config_repeated_key(f):
    return with_config(f, config() + b"seed = 5\n"), "BAREFLOW.CFG line 7: key 'seed' repeated (first set on line 6)"


def case_config_steps_over_seq_len(f):
    return with_config(f, config(steps=100000)), \
        "BAREFLOW.CFG line 3: steps = 100000 out of range 1..256 (the model's seq_len)"


def case_config_malformed_line(f):
    return with_config(f, b"prompt = hi\nsteps 5\n"), "BAREFLOW.CFG line 2: expected 'key = value'"


def case_config_bad_number(f):
    return with_config(f, config(temperature="warm")), "BAREFLOW.CFG line 4: temperature = 'warm' is not a decimal"


def case_config_topp_zero(f):
    return with_config(f, config(topp="0")), "BAREFLOW.CFG line 5: topp = 0 out of range (0, 1]"


def case_config_non_ascii(f):
    return with_config(f, b"steps = 4\nprompt = caf\xc3\xa9\n"), "BAREFLOW.CFG line 2: byte 0xc3 is not printable ASCII"


# ---- model and tokenizer

def case_model_truncated(f):
    f["/MODEL.BIN"] = f["/MODEL.BIN"][:-4]
    return f, "model /MODEL.BIN: file is"


def case_model_heads(f):
    f["/MODEL.BIN"] = patched(f["/MODEL.BIN"], 12, "<i", 7)
    return f, "model /MODEL.BIN: dim 64 is not divisible by n_heads 7"


def case_model_zero_layers(f):
    f["/MODEL.BIN"] = patched(f["/MODEL.BIN"], 8, "<i", 0)
    return f, "model /MODEL.BIN: n_layers = 0, must be positive"


def case_model_short_header(f):
    f["/MODEL.BIN"] = f["/MODEL.BIN"][:20]
    return f, "model /MODEL.BIN: 20 bytes, shorter than the 28-byte header"


def case_tokenizer_truncated(f):
    f["/TOKENIZR.BIN"] = f["/TOKENIZR.BIN"][:-3]
    return f, "tokenizer /TOKENIZR.BIN: token"


def case_tokenizer_trailing(f):
    f["/TOKENIZR.BIN"] = f["/TOKENIZR.BIN"] + b"\0" * 6
    return f, "tokenizer /TOKENIZR.BIN: 6 bytes follow the"


# ---- missing files

def case_missing_tokenizer(f):
    del f["/TOKENIZR.BIN"]
    return f, "file /TOKENIZR.BIN: not found (disk: /TOKENIZR.BIN: 'TOKENIZR.BIN' not found"


def case_missing_config(f):
    del f["/BAREFLOW.CFG"]
    return f, "file /BAREFLOW.CFG: not found"


def case_missing_modules_dir(f):
    for name in [n for n in f if n.startswith("/MODULES/")]:
        del f[name]
    return f, "file /MODULES/EMBED.O0: not found (disk: /MODULES/EMBED.O0: 'MODULES' not found"


CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_panics(tmp_path, case):
    files, fragment = CASES[case](base_files())
    expect_panic(tmp_path, files, fragment)


# ---- the disk itself

def fat_geometry(img, base):
    bps, spc, reserved, nfats, root_entries, _tot16, _media, fat_size = struct.unpack_from("<HBHBHHBH", img, base + 11)
    fat = base + reserved * bps
    root = fat + nfats * fat_size * bps
    return fat, root, root_entries


def root_entry(img, base, short_name):
    _fat, root, entries = fat_geometry(img, base)
    for i in range(entries):
        at = root + 32 * i
        if img[at:at + 11] == short_name:
            return at, struct.unpack_from("<H", img, at + 26)[0], struct.unpack_from("<I", img, at + 28)[0]
    raise AssertionError(f"{short_name} not in the root directory")


def corrupt(tmp_path, edit, files=None):
    image = make_image(tmp_path / "disk.img", files or base_files())
    img = bytearray(image.read_bytes())
    edit(img, PART_LBA * 512)
    image.write_bytes(bytes(img))
    return run_image(image)


def set_fat(img, base, cluster, value):
    fat, _root, _n = fat_geometry(img, base)
    struct.pack_into("<H", img, fat + 2 * cluster, value)


def model_cluster(img, base):
    return root_entry(img, base, b"MODEL   BIN")[1]


@pytest.mark.parametrize("edit, fragment", [
    (lambda img, base: set_fat(img, base, model_cluster(img, base), model_cluster(img, base)),
     "/MODEL.BIN: cluster chain continues past"),
    (lambda img, base: set_fat(img, base, model_cluster(img, base), 0xFFFF),
     "/MODEL.BIN: cluster chain ends after 1 clusters"),
    (lambda img, base: set_fat(img, base, model_cluster(img, base), 0xFFF0),
     "/MODEL.BIN: cluster 65520 (link 1 of its chain) out of range"),
    (lambda img, base: set_fat(img, base, model_cluster(img, base), 0xFFF7),
     "/MODEL.BIN: cluster chain reaches a cluster marked bad"),
    (lambda img, base: struct.pack_into("<H", img, 510, 0x1234), "MBR: signature 0x1234 at offset 510"),
    (lambda img, base: struct.pack_into("B", img, 446 + 4, 0x83), "MBR: no partition of type 0x04, 0x06 or 0x0e"),
    (lambda img, base: struct.pack_into("<I", img, 446 + 12, 10**9), "MBR: partition 1 (type 0x06) spans sectors"),
    (lambda img, base: struct.pack_into("<H", img, base + 11, 1024), "FAT16 BPB: bytes_per_sector 1024"),
    (lambda img, base: struct.pack_into("B", img, base + 13, 3), "FAT16 BPB: sectors_per_cluster 3"),
    (lambda img, base: struct.pack_into("B", img, base + 16, 3), "FAT16 BPB: num_fats 3"),
    (lambda img, base: struct.pack_into("<H", img, base + 19, 60000), "FAT16 BPB: total_sectors 60000"),
    (lambda img, base: struct.pack_into("<H", img, base + 17, 0), "FAT16 BPB: root_entries 0"),
    (lambda img, base: struct.pack_into("<H", img, base + 22, 1), "FAT16 BPB: fat_size_16 1 sectors cannot map"),
], ids=["chain-loop", "chain-short", "chain-range", "chain-bad", "mbr-signature", "mbr-no-fat16",
        "mbr-partition-range", "bpb-sector-size", "bpb-cluster", "bpb-fats", "bpb-total", "bpb-root", "bpb-fat-size"])
def test_corrupt_disk_panics(tmp_path, edit, fragment):
    run = corrupt(tmp_path, edit)
    assert run.code == 1, run.out[-2000:]
    assert fragment in run.panic, run.panic


def test_sampler_result_out_of_range_panics(tmp_path):
    """A module that returns a token id outside the vocabulary is caught, not used as an index."""
    src = tmp_path / "bad_sampler.c"
    src.write_text('#include "bareflow/layer_abi.h"\n'
                   "void bf_layer_entry(struct bf_layer_call *c) { c->result = 1 << 20; }\n")
    bc = tmp_path / "bad_sampler.bc"
    from bareflow_plugins import bitcode
    from test_runtime_hosted import REPO
    bitcode.compile_bitcode(src, bc, cflags=toolchain.FREESTANDING_CFLAGS, include_dirs=[REPO / "src/include"],
                            what="bad sampler")
    obj = tiers.compile_tier(bc.read_bytes(), "O1", "x86-64", module_name="sampler")
    files = base_files(policy=[(n, ["O1" if n == "sampler" else "O0"], [], [], 0) for n in LAYERS])
    files["/MODULES/SAMPLER.O1"] = modformat.pack(obj, layer="sampler", tier="O1", isa="x86-64", exports=set())
    run = expect_panic(tmp_path, files, "layer sampler (tier O1) returned token 1048576, outside 0..")
    assert "BAREFLOW-RESULT" not in run.out
