"""Config loading, overrides and the command dispatcher, on real files and a real command module."""

import json
import sys
import textwrap

import pytest

from pivotrl_jax import atomic, cli
from pivotrl_jax import config as config_lib
from pivotrl_jax.errors import ConfigError, InputError

CONFIG = """
from ml_collections import config_dict

def get_config(arg=None):
    c = config_dict.ConfigDict()
    c.variant = arg or "base"
    c.train = config_dict.ConfigDict(dict(lr=1e-6, steps=10, name="x"))
    c.model_dir = config_dict.placeholder(str)
    return c
"""

COMMAND = '''
"""Echo the resolved config into an output folder."""
from absl import flags
from pivotrl_jax import config as config_lib

DEFAULT_CONFIG = None

def define_flags(fv):
    flags.DEFINE_string("output", None, "Output folder.", flag_values=fv, required=True)

def main(fv):
    config_lib.require(fv.config, "model_dir")
    config_lib.write_resolved_config(fv.config, fv.output)
    return 0
'''


@pytest.fixture
def cfg_file(tmp_path):
    p = tmp_path / "exp.py"
    p.write_text(CONFIG)
    return p


@pytest.fixture
def echo_command(tmp_path, monkeypatch):
    pkg = tmp_path / "echo_cmd_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "echo.py").write_text(textwrap.dedent(COMMAND))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "echo", "echo_cmd_pkg.echo")
    yield "echo"
    sys.modules.pop("echo_cmd_pkg.echo", None)


def test_variant_and_typed_overrides(cfg_file):
    c = config_lib.load_config(f"{cfg_file}:tiny", ["train.lr=3", "train.name=abc"])
    assert c.variant == "tiny"
    assert c.train.lr == 3.0 and isinstance(c.train.lr, float)
    assert c.train.name == "abc"
    assert c.train.steps == 10


def test_unknown_key_is_named(cfg_file):
    with pytest.raises(ConfigError, match=r"'train\.nope'"):
        config_lib.load_config(str(cfg_file), ["train.nope=3"])


def test_wrong_type_is_named(cfg_file):
    with pytest.raises(ConfigError, match=r"train\.steps"):
        config_lib.load_config(str(cfg_file), ["train.steps=1.5"])


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config_lib.load_config(str(tmp_path / "absent.py"))


def test_require_names_missing_key(cfg_file):
    c = config_lib.load_config(str(cfg_file))
    with pytest.raises(ConfigError, match="'model_dir'"):
        config_lib.require(c, "model_dir")
    with pytest.raises(ConfigError, match=r"'train\.absent'"):
        config_lib.require(c, "train.absent")
    config_lib.require(c, "train.lr")


def test_command_writes_resolved_config(cfg_file, echo_command, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(
        [
            "echo",
            f"--config={cfg_file}:v2",
            "--config.train.steps=7",
            "--config.model_dir",
            "/m",
            "--output",
            str(out),
        ]
    )
    assert rc == 0
    written = json.loads((out / "config.json").read_text())["config"]
    assert written["train"]["steps"] == 7
    assert written["variant"] == "v2"
    assert written["model_dir"] == "/m"


def test_command_errors_exit_2(cfg_file, echo_command, tmp_path, capsys):
    assert cli.main(["echo", f"--config={cfg_file}", "--output", str(tmp_path)]) == 2
    assert "model_dir" in capsys.readouterr().err
    assert cli.main(["echo", f"--config={cfg_file}", "--config.x=1", "--output", "o"]) == 2
    assert "unknown config key 'x'" in capsys.readouterr().err
    assert cli.main(["echo", f"--config={cfg_file}"]) == 2  # missing required flag
    assert "--output" in capsys.readouterr().err
    assert cli.main(["no-such-command"]) == 2


def test_usage_lists_commands(echo_command, capsys):
    assert cli.main(["--help"]) == 0
    assert "Echo the resolved config" in capsys.readouterr().out


def test_input_error_location():
    e = InputError("bad JSON", path="a.jsonl", line=4, field="messages[2].tool_calls")
    assert str(e) == "a.jsonl:4: messages[2].tool_calls: bad JSON"


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "x.jsonl"
    atomic.write_jsonl(p, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic.write_jsonl(p, rows())
    assert p.read_text() == '{"a": 1}\n'
    assert [q.name for q in tmp_path.iterdir()] == ["x.jsonl"]
