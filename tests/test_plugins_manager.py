"""Plugin discovery, blocking, load-time validation, error attribution and describe()."""
import sys
import textwrap
import types

import pytest

from bareflow.core.build import declared_variables
from bareflow.policy.api import policy_owner, registered_policies
from bareflow.libc.selection import ordered_providers
from bareflow import hookimpl

from bareflow.core import builtin
from bareflow.errors import BareflowError
from bareflow.core.manager import BareflowPluginManager, PluginHookError, load_plugins

POLICIES = "bareflow.policy.builtin"


@pytest.fixture(autouse=True)
def only_policy_builtin(monkeypatch):
    """Isolate these tests from the other built-ins (owned and tested by other helpers)."""
    monkeypatch.setattr(builtin, "BUILTIN_PLUGINS", [POLICIES])


@pytest.fixture
def make_module(tmp_path, monkeypatch):
    """Write an importable module into a fresh sys.path entry; forget it afterwards."""
    created = []
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(name, source):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        created.append(name)
        return name
    yield make
    for name in created:
        sys.modules.pop(name, None)


@pytest.fixture
def fake_distribution(tmp_path, make_module):
    """A distribution on sys.path exposing `bareflow` entry points (no pip involved)."""
    def make(dist, version, entry_points, modules):
        for name, source in modules.items():
            make_module(name, source)
        info = tmp_path / f"{dist}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text("[bareflow]\n" + lines)
    return make


POLICY_PLUGIN = """
from bareflow import hookimpl
from bareflow.policy.api import Decision, Policy
__version__ = "{version}"

def _decide(layer, variables):
    return Decision(["O0", "O3"], [5])

@hookimpl
def bareflow_register_policies():
    return [Policy("{policy}", "{policy} from a test plugin", _decide, {{"KNOB": "a knob"}})]
"""


def policy_plugin(policy, version="9.9"):
    return POLICY_PLUGIN.format(policy=policy, version=version)


def module_plugin(name, source):
    module = types.ModuleType(name)
    exec(textwrap.dedent(source), module.__dict__)
    return module


# --- discovery ------------------------------------------------------------------------------

def test_builtin_policies_are_registered():
    pm = load_plugins({}, entry_points=False, environ={})
    assert list(registered_policies(pm)) == ["tiered", "fixed", "pgo"]
    core, info = pm.plugin_infos()[:2]
    assert (core.name, core.source) == ("bareflow.core.build", "builtin (core)")
    assert (info.name, info.version, info.source) == (POLICIES, "builtin", "builtin")


def test_missing_builtin_is_an_error(monkeypatch):
    monkeypatch.setattr(builtin, "BUILTIN_PLUGINS", [POLICIES, "bareflow.core.nope"])
    with pytest.raises(BareflowError, match="bareflow.core.nope"):
        load_plugins({}, entry_points=False, environ={})


def test_entry_point_plugin_is_discovered(fake_distribution):
    fake_distribution("fakeplug", "1.2.3", {"fake": "fakeplug_mod"},
                      {"fakeplug_mod": policy_plugin("fake-policy")})
    pm = load_plugins({}, environ={})
    assert "fake-policy" in registered_policies(pm)
    info = {i.name: i for i in pm.plugin_infos()}["fake"]
    assert info.version == "1.2.3"            # from the distribution, not __version__
    assert info.source == "entry point, fakeplug"
    assert policy_owner(pm, "fake-policy") == "fake"
    off = load_plugins({}, entry_points=False, environ={})
    assert "fake-policy" not in registered_policies(off)


def test_blocked_entry_point_is_never_imported(fake_distribution):
    fake_distribution("fakeplug", "1.0", {"fake": "fakeplug_broken"},
                      {"fakeplug_broken": "raise RuntimeError('imported although blocked')"})
    with pytest.raises(BareflowError, match=r"plugin 'fake' \(entry point 'fakeplug_broken' of "
                                            r"fakeplug 1.0\) cannot be loaded: RuntimeError.*; build without "
                                            r"it with BLOCK_PLUGINS=fake, or pip uninstall fakeplug"):
        load_plugins({}, environ={})
    pm = load_plugins({"BLOCK_PLUGINS": "fake"}, environ={})
    assert "fake" not in [i.name for i in pm.plugin_infos()]
    assert pm.blocked_plugins() == {"fake": "BLOCK_PLUGINS"}
    pm = load_plugins({}, environ={"BAREFLOW_BLOCK_PLUGINS": "fake"})
    assert pm.blocked_plugins() == {"fake": "BAREFLOW_BLOCK_PLUGINS"}


def test_explicit_plugins_from_variable_and_environment(make_module):
    make_module("explicit_a", policy_plugin("policy-a", "0.5"))
    make_module("explicit_b", policy_plugin("policy-b"))
    pm = load_plugins({"PLUGINS": "explicit_a"}, entry_points=False,
                      environ={"BAREFLOW_PLUGINS": "explicit_b, explicit_a"})
    infos = {i.name: i for i in pm.plugin_infos()}
    assert infos["explicit_a"].source == "explicit, PLUGINS"
    assert infos["explicit_a"].version == "0.5"
    assert infos["explicit_b"].source == "explicit, BAREFLOW_PLUGINS"
    assert {"policy-a", "policy-b"} <= set(registered_policies(pm))


def test_explicit_plugin_that_cannot_be_imported():
    with pytest.raises(BareflowError, match="plugin 'no_such_plugin_mod' named in PLUGINS cannot "
                                            "be imported: ModuleNotFoundError"):
        load_plugins({"PLUGINS": "no_such_plugin_mod"}, entry_points=False, environ={})
    with pytest.raises(BareflowError, match="PLUGINS: 'bad name!' is not"):
        load_plugins({"PLUGINS": "bad name!"}, entry_points=False, environ={})


def test_blocking_a_builtin_lets_a_plugin_replace_it(make_module):
    make_module("my_tiered", policy_plugin("tiered"))
    with pytest.raises(BareflowError) as err:
        registered_policies(load_plugins({"PLUGINS": "my_tiered"}, entry_points=False, environ={}))
    message = str(err.value)
    assert message.startswith(f"policy 'tiered' is registered by plugin '{POLICIES}' and again "
                              f"by plugin 'my_tiered'; block one of them")
    pm = load_plugins({"PLUGINS": "my_tiered", "BLOCK_PLUGINS": POLICIES}, entry_points=False,
                      environ={})
    assert list(registered_policies(pm)) == ["tiered"]
    assert policy_owner(pm, "tiered") == "my_tiered"


def test_blocking_an_unknown_plugin_is_an_error():
    with pytest.raises(BareflowError, match=r"BLOCK_PLUGINS names plugin 'policies', which does "
                                            r"not exist; known plugins: bareflow"):
        load_plugins({"BLOCK_PLUGINS": "policies"}, entry_points=False, environ={})


def test_configure_is_left_to_the_caller(make_module):
    make_module("configure_probe", """
        seen = []
        def bareflow_configure(variables):      # no @hookimpl: the bareflow_ prefix suffices
            seen.append(dict(variables))
            if variables.get("MODEL") == "bad":
                raise ValueError("MODEL must not be bad")
    """)
    pm = load_plugins({"PLUGINS": "configure_probe", "MODEL": "bad"}, entry_points=False,
                      environ={})
    probe = sys.modules["configure_probe"]
    assert probe.seen == []                   # loading alone configures nothing
    pm.hook.bareflow_configure(variables={"MODEL": "m"})
    assert probe.seen == [{"MODEL": "m"}]
    with pytest.raises(PluginHookError, match="plugin 'configure_probe' failed in hook "
                                              "bareflow_configure: ValueError: MODEL must not be bad"):
        pm.hook.bareflow_configure(variables={"MODEL": "bad"})
    assert pm.plugin_names() == ["bareflow.core.build", POLICIES, "configure_probe"]
    declared = {plugin: [v.name for v in variables] for plugin, variables in declared_variables(pm).items()}
    assert declared[POLICIES] == ["TIER", "STOP_PROFILING", "PGO_HOT_CALLS", "JIT_COMPILE_CYCLES", "SPLIT_CYCLES"]
    assert "PROFILE" in declared["bareflow.core.build"]


# --- load-time validation -----------------------------------------------------------------------

def test_misspelled_hook_suggests_the_right_name():
    pm = BareflowPluginManager()
    plugin = module_plugin("typo_plugin", """
        def bareflow_register_policy():
            return []
    """)
    with pytest.raises(BareflowError, match="plugin 'typo_plugin' implements "
                                            "bareflow_register_policy, which is not a BareFlow "
                                            "hook; did you mean bareflow_register_policies"):
        pm.register(plugin, "typo_plugin")
    assert not pm.is_registered(plugin)


def test_marked_function_with_unknown_name_lists_the_hooks():
    pm = BareflowPluginManager()
    plugin = module_plugin("marked", """
        from bareflow import hookimpl
        @hookimpl
        def totally_different():
            pass
    """)
    with pytest.raises(BareflowError, match="known hooks: bareflow_configure, "):
        pm.register(plugin, "marked")


def test_unknown_argument_names_plugin_hook_and_argument():
    pm = BareflowPluginManager()
    plugin = module_plugin("argplug", """
        def bareflow_image_files(variables, files, colour):
            pass
    """)
    with pytest.raises(BareflowError, match=r"plugin 'argplug': hook bareflow_image_files has no "
                                            r"argument 'colour' \(it provides: variables, files, products\)"):
        pm.register(plugin, "argplug")
    ok = module_plugin("subset", """
        def bareflow_image_files(files, unused=None):   # a subset, and defaults, are fine
            files["/A.TXT"] = b"a"
    """)
    pm.register(ok, "subset")
    files = {}
    pm.hook.bareflow_image_files(variables={}, files=files, products={})
    assert files == {"/A.TXT": b"a"}


def test_pluggy_validation_error_becomes_bareflow_error():
    pm = BareflowPluginManager()
    plugin = module_plugin("notgen", """
        from bareflow import hookimpl
        @hookimpl(wrapper=True)
        def bareflow_configure(variables):
            return None
    """)
    with pytest.raises(BareflowError, match="plugin 'notgen' is invalid: .*not a generator"):
        pm.register(plugin, "notgen")
    assert pm.get_plugin("notgen") is None


def test_wrapper_on_a_registration_hook_is_refused():
    pm = BareflowPluginManager()
    plugin = module_plugin("wrapreg", """
        from bareflow import hookimpl
        @hookimpl(wrapper=True)
        def bareflow_register_policies():
            return (yield)
    """)
    with pytest.raises(BareflowError, match="bareflow_register_policies cannot be implemented as "
                                            "a wrapper"):
        pm.register(plugin, "wrapreg")


def test_same_plugin_name_twice():
    pm = BareflowPluginManager()
    pm.register(module_plugin("one", ""), "dup", source="explicit, PLUGINS")
    with pytest.raises(BareflowError, match="two plugins are named 'dup'"):
        pm.register(module_plugin("two", ""), "dup", source="entry point, x")


# --- errors while calling hooks ------------------------------------------------------------------

class Configure:
    def __init__(self, fail):
        self.fail = fail
        self.called = False

    @hookimpl
    def bareflow_configure(self, variables):
        self.called = True
        if self.fail:
            raise KeyError("needs MODEL")


def test_exception_names_the_failing_plugin():
    pm = BareflowPluginManager()
    good, bad = Configure(False), Configure(True)
    pm.register(good, "good-plugin")
    pm.register(bad, "bad-plugin")
    with pytest.raises(PluginHookError) as err:
        pm.hook.bareflow_configure(variables={})
    line = err.value.__cause__.__traceback__.tb_next.tb_lineno        # the plugin's raise
    assert str(err.value) == ("plugin 'bad-plugin' failed in hook bareflow_configure: "
                              f"KeyError: 'needs MODEL' (at test_plugins_manager.py:{line})")
    assert (err.value.plugin, err.value.hook) == ("bad-plugin", "bareflow_configure")
    assert isinstance(err.value.__cause__, KeyError)


def test_a_plugins_own_refusal_leads_its_message():
    # A BareflowError is worded for the user: no "failed in hook ...: BareflowError:" before it.
    # BareFlow's own plugins (bareflow.*) name the culprit themselves; others are named.
    class Refuses:
        @hookimpl
        def bareflow_configure(self, variables):
            raise BareflowError("PROFILE=x.bin: no such file")
    for name, expected in (("bareflow.policy.builtin", "PROFILE=x.bin: no such file"),
                           ("mine", "plugin 'mine': PROFILE=x.bin: no such file")):
        pm = BareflowPluginManager()
        pm.register(Refuses(), name)
        with pytest.raises(PluginHookError) as err:
            pm.hook.bareflow_configure(variables={})
        assert str(err.value) == expected and err.value.plugin == name


def test_exception_inside_wrapped_call_names_the_inner_plugin():
    pm = BareflowPluginManager()
    wrapper = module_plugin("wrapping", """
        from bareflow import hookimpl
        @hookimpl(wrapper=True)
        def bareflow_configure(variables):
            variables.get("W")
            return (yield)
    """)
    inner = module_plugin("inner", """
        def bareflow_configure(variables):
            raise OSError("disk full")
    """)
    pm.register(wrapper, "wrapping")
    pm.register(inner, "inner")
    with pytest.raises(PluginHookError, match="plugin 'inner' failed in hook "
                                              "bareflow_configure: OSError: disk full"):
        pm.hook.bareflow_configure(variables={})
    pm.unregister(inner)
    failing_wrapper = module_plugin("failwrap", """
        from bareflow import hookimpl
        @hookimpl(wrapper=True)
        def bareflow_configure(variables):
            result = yield
            raise ValueError("after")
    """)
    pm.register(failing_wrapper, "failwrap")
    with pytest.raises(PluginHookError, match="plugin 'failwrap' failed .*ValueError: after"):
        pm.hook.bareflow_configure(variables={})


def test_exception_in_registration_hook():
    pm = BareflowPluginManager()
    pm.register(module_plugin("regfail", """
        def bareflow_register_policies():
            return [1 / 0]
    """), "regfail")
    with pytest.raises(PluginHookError, match="plugin 'regfail' failed in hook "
                                              "bareflow_register_policies: ZeroDivisionError"):
        registered_policies(pm)


@pytest.mark.parametrize("body, message", [
    ("return Decision(['O0'])", r"must return a list, not Decision"),
    ("return [object()]", r"returned <object object at .*>, which has no usable 'name'"),
    ("return [Policy(' x', '', lambda l, v: None)]", "no usable 'name'"),
    ("return [Policy('x', '', 'not callable')]", "policy 'x' has no callable 'decide'"),
    ("return [Policy('x', 3, lambda l, v: None)]", "'description' must be a string"),
    ("return [Policy('x', '', lambda l, v: None, ['A'])]", "'options' must map variable names"),
])
def test_bad_policy_registrations(body, message):
    pm = BareflowPluginManager()
    pm.register(module_plugin("badreg", f"""
        from bareflow.policy.api import Decision, Policy
        def bareflow_register_policies():
            {body}
    """), "badreg")
    with pytest.raises(BareflowError, match=r"plugin 'badreg'.*" + message):
        registered_policies(pm)


def test_registration_collections():
    pm = BareflowPluginManager()
    pm.register(module_plugin("regs", """
        from types import SimpleNamespace as NS
        def bareflow_register_libc_providers():
            return [NS(name="late", priority=90), NS(name="early", priority=10),
                    NS(name="also-early", priority=10)]
        def bareflow_register_bootloaders():
            return [NS(name="syslinux-test", description="boots", files=["A", "B"])]
        def bareflow_register_flash_targets():
            return [NS(name="file", description="to a file", capabilities={"verify": True})]
    """), "regs")
    assert [p.name for p in ordered_providers(pm)] == ["also-early", "early", "late"]
    assert list(pm.registered("bootloaders")) == ["syslinux-test"]
    assert pm.registered("flash_targets") == pm.registered("bareflow_register_flash_targets")
    assert list(pm.registered("flash_targets")) == ["file"]
    with pytest.raises(BareflowError, match="not a registration hook"):
        pm.registered("bareflow_configure")
    pm.register(module_plugin("badprio", """
        from types import SimpleNamespace as NS
        def bareflow_register_libc_providers():
            return [NS(name="odd", priority="high")]
    """), "badprio")
    with pytest.raises(BareflowError, match="plugin 'badprio': libc provider 'odd' has priority"):
        ordered_providers(pm)


# --- describe ------------------------------------------------------------------------------------

def test_describe_lists_plugins_hooks_and_registrations(fake_distribution, make_module):
    fake_distribution("fakeplug", "1.2.3", {"fake": "fakeplug_desc"},
                      {"fakeplug_desc": policy_plugin("fake-policy")})
    make_module("explicit_desc", """
        from dataclasses import dataclass
        from types import SimpleNamespace as NS
        __version__ = "3.1"
        @dataclass
        class Caps:
            verify: bool
            accepts: str
        def bareflow_register_flash_targets():
            return [NS(name="sdcard", description="Write to an SD card\\nsecond line",
                       capabilities={"verify": True, "eject": False}),
                    NS(name="usb", capabilities=Caps(False, "a stick"))]
        def bareflow_image_files(files):
            pass
    """)
    pm = load_plugins({"PLUGINS": "explicit_desc", "BLOCK_PLUGINS": POLICIES}, environ={})
    text = pm.describe()
    assert text.startswith("BareFlow plugins: 3 loaded, 1 blocked\n")
    assert "fake  version: 1.2.3  source: entry point, fakeplug\n" in text
    assert "  hooks: bareflow_register_policies\n  policies:\n" in text
    assert "    fake-policy - fake-policy from a test plugin\n" in text
    assert "        KNOB: a knob\n" in text
    assert "explicit_desc  version: 3.1  source: explicit, PLUGINS\n" in text
    assert "  hooks: bareflow_image_files, bareflow_register_flash_targets\n" in text
    assert "  flash targets:\n    sdcard - Write to an SD card\n" in text
    assert "second line" not in text
    assert "        eject: no\n        verify: yes\n" in text
    assert "    usb\n      capabilities:\n        verify: no\n        accepts: a stick\n" in text
    assert f"{POLICIES} [blocked by BLOCK_PLUGINS]" in text
    assert pm.describe() == text          # deterministic


def test_describe_builtin_policies_show_options():
    text = load_plugins({}, entry_points=False, environ={}).describe()
    assert f"{POLICIES}  version: builtin  source: builtin" in text
    for name in ("tiered", "fixed", "pgo", "TIER:", "PROFILE:", "PGO_HOT_CALLS:", "STOP_PROFILING:"):
        assert name in text


def test_shipped_builtins_load_together(monkeypatch):
    """The real BUILTIN_PLUGINS list loads cleanly, after the core plugin."""
    monkeypatch.undo()
    pm = load_plugins({}, entry_points=False, environ={})
    names = [i.name for i in pm.plugin_infos()]
    assert names == [builtin.CORE_PLUGIN] + builtin.BUILTIN_PLUGINS
    assert "tiered" in registered_policies(pm)
    pm.describe()
