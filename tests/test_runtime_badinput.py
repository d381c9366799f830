"""Every bad input stops bareflow-hosted with a BAREFLOW-PANIC line naming the culprit, exit 1.

Each case starts from the good image of test_runtime_hosted, breaks one thing, and checks the
panic message fragment that names the file and field.  A hang would hit the subprocess timeout
and fail the test.
"""
import struct
import zlib

import pytest

from bareflow.modules import modformat

from bareflow.tiers import compile as tiers

from buildutil import module_bitcode
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


def case_module_isa_v4(f):
    # This CPU may run v4 modules; either way the level is not the one the run chose.
    return set_module(f, "/MODULES/SAMPLER.O0", recrc_module(patched(f["/MODULES/SAMPLER.O0"], 25, "B", 3))), \
        "module /MODULES/SAMPLER.O0: built for x86-64-v4 "


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
        "policy /POLICY.TBL: layer 'ffn' has two entries for x86-64 (6 and 9)"


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


def case_config_invalid_utf8(f):
    return with_config(f, b"steps = 4\nprompt = caf\xc3(\n"), "BAREFLOW.CFG line 2: byte 0xc3 is not valid UTF-8"


def case_config_control_byte(f):
    return with_config(f, b"steps = 4\nprompt = a\x01b\n"), "BAREFLOW.CFG line 2: control byte 0x01"


def case_config_bad_chat_escape(f):
    return with_config(f, b"steps = 4\nchat_before = a\\qb\n"), \
        "BAREFLOW.CFG line 2: chat_before has an unknown escape '\\q'"


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
    size = len(f["/TOKENIZR.BIN"])
    f["/TOKENIZR.BIN"] = f["/TOKENIZR.BIN"][:-3]
    return f, f"tokenizer /TOKENIZR.BIN: file_size field {size} but the file has {size - 3} bytes"


def case_tokenizer_trailing(f):
    size = len(f["/TOKENIZR.BIN"])
    f["/TOKENIZR.BIN"] = f["/TOKENIZR.BIN"] + b"\0" * 6
    return f, f"tokenizer /TOKENIZR.BIN: file_size field {size} but the file has {size + 6} bytes"


# ---- more module header and relocation rules (each one a loader check of its own)

def module_header(f, name, offset, fmt, value):
    return set_module(f, name, recrc_module(patched(f[name], offset, fmt, value)))


def case_module_version(f):
    return module_header(f, "/MODULES/EMBED.O0", 4, "<H", 2), \
        "module /MODULES/EMBED.O0: version 2, this kernel reads version 1"


def case_module_header_size(f):
    return module_header(f, "/MODULES/EMBED.O0", 6, "<H", 32), "module /MODULES/EMBED.O0: header_size 32, expected 64"


def case_module_isa_unknown(f):
    return module_header(f, "/MODULES/EMBED.O0", 25, "B", 4), "module /MODULES/EMBED.O0: isa code 4 is unknown"


def case_module_image_too_big(f):
    return module_header(f, "/MODULES/EMBED.O0", 28, "<I", (16 << 20) + 16), \
        "module /MODULES/EMBED.O0: image_size 16777232 with file_image_size"


def case_module_align(f):
    return module_header(f, "/MODULES/EMBED.O0", 36, "<I", 24), \
        "module /MODULES/EMBED.O0: align 24 is not a power of two in 16..4096"


def case_module_text_past_image(f):
    info = modformat.parse(f["/MODULES/EMBED.O0"])
    return module_header(f, "/MODULES/EMBED.O0", 44, "<I", info.file_image_size + 1), \
        "module /MODULES/EMBED.O0: text_size"


def case_module_too_many_imports(f):
    return module_header(f, "/MODULES/EMBED.O0", 52, "<I", 257), "module /MODULES/EMBED.O0: n_imports 257, at most 256"


def case_module_sizes_disagree(f):
    n_relocs = struct.unpack_from("<I", f["/MODULES/EMBED.O0"], 48)[0]
    return module_header(f, "/MODULES/EMBED.O0", 48, "<I", n_relocs + 1), \
        "module /MODULES/EMBED.O0: file is"


def first_reloc(f):
    """(file name, data, byte offset of its relocation record 0): the modules' relocations are all
    IMPORT64 (they hold no data pointers), so the RELATIVE64 cases rewrite one."""
    name, data = module_with_relocs(f)
    return name, data, 64 + modformat.parse(data).file_image_size


def case_module_reloc_kind(f):
    name, data, at = first_reloc(f)
    return set_module(f, name, recrc_module(patched(data, at + 4, "<H", 3))), \
        f"module {name}: relocation 0 has kind 3"


def case_module_relative_addend(f):
    name, data, at = first_reloc(f)
    data = patched(patched(patched(data, at + 4, "<H", modformat.RELATIVE64), at + 6, "<H", 0), at + 8, "<q", -8)
    return set_module(f, name, recrc_module(data)), \
        f"module {name}: RELATIVE64 relocation 0 has import index 0 and addend -8"


def case_module_relative_index(f):
    name, data, at = first_reloc(f)
    data = patched(patched(data, at + 4, "<H", modformat.RELATIVE64), at + 6, "<H", 1)
    return set_module(f, name, recrc_module(data)), f"module {name}: RELATIVE64 relocation 0 has import index 1"


def case_module_import_index(f):
    name, data, at = first_reloc(f)
    assert struct.unpack_from("<H", data, at + 4)[0] == modformat.IMPORT64
    return set_module(f, name, recrc_module(patched(data, at + 6, "<H", 300))), \
        f"module {name}: IMPORT64 relocation 0 names import 300"


def case_module_import_not_printable(f):
    name, data = module_with_import(f)
    at = len(data) - 32 * len(modformat.parse(data).imports)
    return set_module(f, name, recrc_module(patched(data, at, "4s", b"ex\x01p"))), \
        f"module {name}: import 0 has the non-printable byte 0x01"


# ---- more policy table rules

def policy_patched(offset, fmt, value):
    data = bytearray(policy_table(simple_policy()))
    struct.pack_into(fmt, data, offset, value)
    struct.pack_into("<I", data, 12, 0)
    struct.pack_into("<I", data, 12, zlib.crc32(bytes(data)))
    return bytes(data)


def case_policy_n_tiers(f):
    f["/POLICY.TBL"] = policy_patched(16 + 16, "B", 5)
    return f, "policy /POLICY.TBL: layer 'embed': n_tiers 5, expected 1..4"


def case_policy_reserved(f):
    f["/POLICY.TBL"] = policy_patched(16 + 36, "B", 1)
    return f, "policy /POLICY.TBL: layer 'embed': reserved bytes are not zero"


def case_policy_reserved_after_isa(f):
    f["/POLICY.TBL"] = policy_patched(16 + 36, "I", 1)
    return f, "policy /POLICY.TBL: layer 'embed': reserved bytes are not zero"


def case_policy_isa_code(f):
    f["/POLICY.TBL"] = policy_patched(16 + 18, "B", 4)
    return f, "policy /POLICY.TBL: entry 0 (layer 'embed'): isa code 4 is not 0..3"


def case_policy_level_incomplete(f):
    f["/POLICY.TBL"] = policy_patched(16 + 64 * 2 + 18, "B", 1)     # qkv's entry says x86-64-v2
    return f, "policy /POLICY.TBL: layer 'qkv' has no entry for x86-64"


def case_policy_ladder_padding(f):
    f["/POLICY.TBL"] = policy_patched(16 + 21, "B", 2)
    return f, "policy /POLICY.TBL: layer 'embed': ladder[1] = 2 past n_tiers 1, expected 0xff"


def case_policy_tier_code(f):
    f["/POLICY.TBL"] = policy_patched(16 + 20, "B", 4)
    return f, "policy /POLICY.TBL: layer 'embed': ladder[0] = 4 is not a tier code 0..3"


def case_policy_threshold_limit(f):
    return with_policy(f, replaced("ffn", ("ffn", ["O0", "O1"], [1000000001], [], 0))), \
        "policy /POLICY.TBL: layer 'ffn': step 0 thresholds calls 1000000001"


def case_policy_trigger_past_ladder(f):
    return with_policy(f, replaced("ffn", ("ffn", ["O1"], [5], [], 0))), \
        "policy /POLICY.TBL: layer 'ffn': step 0 has a trigger but the ladder has only 1 tiers"


def case_policy_layer_field(f):
    f["/POLICY.TBL"] = policy_patched(16, "5s", b"EMBED")
    return f, "policy /POLICY.TBL: entry 0: layer field is not 1-15 characters"


def case_policy_n_layers_zero(f):
    f["/POLICY.TBL"] = policy_patched(8, "<H", 0)
    return f, "policy /POLICY.TBL: n_layers 0, expected 1..64"


def case_policy_size(f):
    f["/POLICY.TBL"] = policy_table(simple_policy()) + b"\0" * 64
    return f, "policy /POLICY.TBL: file is 656 bytes, 9 entries need 592"


def case_policy_short(f):
    f["/POLICY.TBL"] = b"BFPT"
    return f, "policy /POLICY.TBL: 4 bytes, shorter than the 16-byte header"


# ---- more configuration rules

def case_config_prompt_too_long(f):
    return with_config(f, config(prompt="a" * 1024)), "BAREFLOW.CFG line 2: prompt is 1024 bytes, at most 1023"


def case_config_steps_zero(f):
    return with_config(f, config(steps=0)), "BAREFLOW.CFG line 3: steps = 0 out of range"


def case_config_seed_overflow(f):
    return with_config(f, config(seed=2**64)), f"BAREFLOW.CFG line 6: seed = '{2**64}' is not an integer"


def case_config_temperature_range(f):
    return with_config(f, config(temperature="2.5")), "BAREFLOW.CFG line 4: temperature = 2.5 out of range 0..2"


def case_config_too_big(f):
    return with_config(f, config() + b"#" * 9000 + b"\n"), "BAREFLOW.CFG: "


def case_config_lone_cr(f):
    return with_config(f, b"steps = 4\rseed = 1\n"), "BAREFLOW.CFG line 1: control byte 0x0d"


# ---- more model and tokenizer rules

def model_header(f, index, value):
    f["/MODEL.BIN"] = patched(f["/MODEL.BIN"], 4 * index, "<i", value)
    return f


def case_model_vocab_one(f):
    """A consistent checkpoint whose one token cannot be BOS: the run would embed id 1 past the table."""
    dim, hidden, layers, seq = 8, 8, 1, 8
    floats = dim + 2 * layers * dim + 4 * layers * dim * dim + 3 * layers * hidden * dim + dim + seq * (dim // 2)
    f["/MODEL.BIN"] = struct.pack("<7i", dim, hidden, layers, 2, 2, 1, seq) + b"\0" * (4 * floats)
    f["/TOKENIZR.BIN"] = struct.pack("<ifi", 1, 0.0, 1) + b"a"
    return with_config(f, config(prompt="", steps=4)), \
        "model /MODEL.BIN: vocab_size = 1 leaves no room for BOS (token id 1)"


def case_model_vocab_minus_one(f):
    return model_header(f, 5, -1), "model /MODEL.BIN: vocab_size = -1 leaves no room for BOS (token id 1)"


def case_model_vocab_int_min(f):
    return model_header(f, 5, -2**31), "model /MODEL.BIN: vocab_size = -2147483648 exceeds the limit"


def case_model_dim_limit(f):
    return model_header(f, 0, 1 << 17), "model /MODEL.BIN: dim = 131072 exceeds the limit 16384"


def case_model_kv_heads_over_heads(f):
    heads = struct.unpack_from("<i", f["/MODEL.BIN"], 12)[0]
    return model_header(f, 4, heads + 1), f"model /MODEL.BIN: n_heads {heads} is not divisible by n_kv_heads {heads + 1}"


def case_model_kv_heads_divide(f):
    return model_header(model_header(f, 3, 8), 4, 3), "model /MODEL.BIN: n_heads 8 is not divisible by n_kv_heads 3"


def case_model_odd_head_size(f):
    dim = struct.unpack_from("<i", f["/MODEL.BIN"], 0)[0]
    return model_header(model_header(f, 3, dim), 4, 1), "model /MODEL.BIN: head size 1 (dim / n_heads) is odd"


def tokenizer_patched(data, offset, fmt, *values):
    """A TOKENIZR.BIN v2 with one field changed and its CRC-32 made right again, so the check of
    that field (not the checksum) is what fails."""
    data = bytearray(patched(data, offset, fmt, *values))
    data[72:76] = b"\0\0\0\0"
    data[72:76] = struct.pack("<I", zlib.crc32(bytes(data)))
    return bytes(data)


TOKENS_AT, TOKEN_SIZE = 96, 12


def case_tokenizer_v1_file(f):
    f["/TOKENIZR.BIN"] = struct.pack("<ifi", 1, 0.0, 1) + b"a" * 100
    return f, "tokenizer /TOKENIZR.BIN: magic is not BFTK (a llama2.c tokenizer.bin must be converted"


def case_tokenizer_checksum(f):
    data = bytearray(f["/TOKENIZR.BIN"])
    data[-1] ^= 0x20
    f["/TOKENIZR.BIN"] = bytes(data)
    return f, "tokenizer /TOKENIZR.BIN: checksum 0x"


def case_tokenizer_kind(f):
    f["/TOKENIZR.BIN"] = tokenizer_patched(f["/TOKENIZR.BIN"], 8, "<I", 7)
    return f, "tokenizer /TOKENIZR.BIN: kind 7 is not 1 (llama2c), 2 (llama) or 3 (gpt2)"


def case_tokenizer_offsets(f):
    data = f["/TOKENIZR.BIN"]
    f["/TOKENIZR.BIN"] = tokenizer_patched(data, 56, "<I", struct.unpack_from("<I", data, 56)[0] + 8)
    return f, "tokenizer /TOKENIZR.BIN: section offsets do not follow header, token table, merges, strings"


def case_tokenizer_vocab_mismatch(f):
    data = f["/TOKENIZR.BIN"]
    n = struct.unpack_from("<I", data, 16)[0]
    from bareflow.model import tokenizer_v2
    v = tokenizer_v2.decode(data)
    v.pieces.append(b"extra piece")
    v.scores.append(0.0)
    v.types.append(1)
    f["/TOKENIZR.BIN"] = tokenizer_v2.encode(v)
    return f, f"tokenizer /TOKENIZR.BIN: {n + 1} tokens but the model's vocab_size is {n}"


def case_tokenizer_bad_id(f):
    f["/TOKENIZR.BIN"] = tokenizer_patched(f["/TOKENIZR.BIN"], 36, "<i", 1 << 20)
    return f, "tokenizer /TOKENIZR.BIN: eos id 1048576 is outside -1.."


def case_tokenizer_score_nan(f):
    f["/TOKENIZR.BIN"] = tokenizer_patched(f["/TOKENIZR.BIN"], TOKENS_AT, "<I", 0x7FC00000)
    return f, "tokenizer /TOKENIZR.BIN: token 0 has a score that is not finite"


def case_tokenizer_piece_outside(f):
    f["/TOKENIZR.BIN"] = tokenizer_patched(f["/TOKENIZR.BIN"], TOKENS_AT + 4, "<I", 1 << 30)
    return f, "tokenizer /TOKENIZR.BIN: token 0: piece at 1073741824+"


def case_tokenizer_bad_type(f):
    f["/TOKENIZR.BIN"] = tokenizer_patched(f["/TOKENIZR.BIN"], TOKENS_AT + 10, "B", 9)
    return f, "tokenizer /TOKENIZR.BIN: token 0 has type 9, not 1..6"


def case_tokenizer_duplicate_piece(f):
    data = f["/TOKENIZR.BIN"]
    off, length = struct.unpack_from("<IH", data, TOKENS_AT + 5 * TOKEN_SIZE + 4)
    f["/TOKENIZR.BIN"] = tokenizer_patched(data, TOKENS_AT + 6 * TOKEN_SIZE + 4, "<IH", off, length)
    return f, "tokenizer /TOKENIZR.BIN: token 6 has the same piece as token 5"


def case_tokenizer_no_space_piece(f):
    from bareflow.model import tokenizer_v2
    v = tokenizer_v2.decode(f["/TOKENIZR.BIN"])
    v.pieces[v.pieces.index(b" ")] = b"\x7f"
    f["/TOKENIZR.BIN"] = tokenizer_v2.encode(v)
    return f, 'tokenizer /TOKENIZR.BIN: no " " piece for the dummy prefix of a non-empty prompt'


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
     "/MODEL.BIN: cluster chain loops back to cluster"),
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
    (lambda img, base: struct.pack_into("<H", img, base + 14, 0), "FAT16 BPB: reserved_sectors 0"),
    (lambda img, base: struct.pack_into("<H", img, base + 22, 0), "FAT16 BPB: fat_size_16 is 0"),
    (lambda img, base: struct.pack_into("<H", img, base + 22, 0xFFFF), "root directory (131103 sectors) fill the"),
    (lambda img, base: struct.pack_into("B", img, base + 13, 8), "clusters, a FAT16 volume has 4085..65524"),
    (lambda img, base: struct.pack_into("<H", img, root_entry(img, base, b"MODEL   BIN")[0] + 26, 0xFFF0),
     "/MODEL.BIN: cluster 65520 (link 0 of its chain) out of range"),
    (lambda img, base: struct.pack_into("<H", img, root_entry(img, base, b"MODULES    ")[0] + 26, 0xFFF0),
     "/MODULES: cluster 65520 (link 0 of its chain) out of range"),
], ids=["chain-loop", "chain-short", "chain-range", "chain-bad", "mbr-signature", "mbr-no-fat16",
        "mbr-partition-range", "bpb-sector-size", "bpb-cluster", "bpb-fats", "bpb-total", "bpb-root", "bpb-fat-size",
        "bpb-reserved", "bpb-fat-zero", "bpb-fills-volume", "bpb-few-clusters", "file-first-cluster",
        "dir-first-cluster"])
def test_corrupt_disk_panics(tmp_path, edit, fragment):
    run = corrupt(tmp_path, edit)
    assert run.code == 1, run.out[-2000:]
    assert fragment in run.panic, run.panic


def test_sampler_result_out_of_range_panics(tmp_path):
    """A module that returns a token id outside the vocabulary is caught, not used as an index."""
    bc = module_bitcode(tmp_path, "bad_sampler", "void bf_layer_entry(struct bf_layer_call *c) { c->result = 1 << 20; }\n")
    obj = tiers.compile_tier(bc.read_bytes(), "O1", "x86-64", module_name="sampler")
    files = base_files(policy=[(n, ["O1" if n == "sampler" else "O0"], [], [], 0) for n in LAYERS])
    files["/MODULES/SAMPLER.O1"] = modformat.pack(obj, layer="sampler", tier="O1", isa="x86-64", exports=set())
    run = expect_panic(tmp_path, files, "layer sampler (tier O1) returned token 1048576, outside 0..")
    assert "BAREFLOW-RESULT" not in run.out
