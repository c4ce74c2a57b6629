"""docs/config.md is the config reference rendered from the config files, key for key."""

from pathlib import Path

from pivotrl_jax import config as config_lib
from pivotrl_jax import config_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_docs_config_md_is_up_to_date():
    assert DOC.read_text(encoding="utf-8") == config_reference.render(), (
        "docs/config.md is stale: python -m pivotrl_jax.config_reference > docs/config.md"
    )


def test_every_key_of_every_command_config_is_listed():
    text = config_reference.render()
    specs = config_reference.command_configs()
    assert {"train", "profile", "select", "extract", "sft", "init-model", "demo"} <= set(specs)
    for name, spec in specs.items():
        section = text.split(f"\n## pivotrl {name}\n", 1)[1].split("\n## ", 1)[0]
        cfg = config_lib.to_dict(config_lib.load_config(spec))
        for key, _ in config_reference._flatten(cfg):
            assert f"| `{key}` |" in section, (name, key)


def test_comments_come_from_the_line_or_the_lines_above(tmp_path):
    path = tmp_path / "c.py"
    path.write_text(
        "def get_config(arg=None):\n"
        "    c = ConfigDict()\n"
        "    c.seed = 0  # the run seed\n"
        "    # Two lines\n"
        "    # above.\n"
        "    c.train = ConfigDict(dict(steps=3,  # iterations\n"
        "                              lr=1.0))\n"
        "    if arg:\n"
        "        c.seed = 1  # a variant's value\n"
        "    return c\n"
    )
    assert config_reference.key_comments(path) == {
        "seed": "the run seed",
        "train": "Two lines above.",
        "train.steps": "iterations",
    }
