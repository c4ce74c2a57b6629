"""The `pivotrl` command.

    pivotrl <command> [--config=configs/NAME.py[:variant]] [--config.a.b=v] [flags]


Each command lives in `pivotrl_jax/commands/<name>.py` with `define_flags(fv)`, `main(fv) -> int`
and an optional `DEFAULT_CONFIG`; modules are imported only when their command runs.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from collections.abc import Sequence

from absl import flags

from pivotrl_jax import config as config_lib
from pivotrl_jax import distributed
from pivotrl_jax.errors import PivotError

# command name -> module path
COMMANDS: dict[str, str] = {
    "convert": "pivotrl_jax.commands.convert",
    "demo": "pivotrl_jax.commands.demo",
    "export": "pivotrl_jax.commands.export",
    "extract": "pivotrl_jax.commands.extract",
    "init-model": "pivotrl_jax.commands.init_model",
    "profile": "pivotrl_jax.commands.profile",
    "score": "pivotrl_jax.commands.score",
    "select": "pivotrl_jax.commands.select",
    "sft": "pivotrl_jax.commands.sft",
    "show": "pivotrl_jax.commands.show",
    "train": "pivotrl_jax.commands.train",
    "verify": "pivotrl_jax.commands.verify",
}


def _summary(module_path: str) -> str:
    """First docstring line of a command module, read without importing it."""
    spec = importlib.util.find_spec(module_path)
    if spec is None or not spec.origin:
        return ""
    with open(spec.origin, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _usage() -> str:
    lines = ["usage: pivotrl <command> [flags]", "", "commands:"]
    width = max((len(n) for n in COMMANDS), default=0)
    lines += [f"  {name.ljust(width)}  {_summary(mod)}" for name, mod in sorted(COMMANDS.items())]
    lines += ["", "`pivotrl <command> --help` lists a command's flags."]
    return "\n".join(lines)


def build_flags(name: str, argv: Sequence[str]) -> tuple[object, flags.FlagValues]:
    """Import command `name` and define its flags (and `--config` when it takes one)."""
    module = importlib.import_module(COMMANDS[name])
    fv = flags.FlagValues()
    if hasattr(module, "DEFAULT_CONFIG"):
        config_lib.define_config_flag(fv, argv, module.DEFAULT_CONFIG)
    module.define_flags(fv)
    return module, fv


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (0 ok, 1 failed run, 2 bad input or config)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    name = argv[0]
    if name not in COMMANDS:
        print(f"pivotrl: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    full_argv = [f"pivotrl {name}", *argv[1:]]
    try:
        module, fv = build_flags(name, full_argv)
        if "--help" in argv[1:] or "-h" in argv[1:]:
            print(f"usage: pivotrl {name} [flags]\n\n{_summary(COMMANDS[name])}\n")
            print(fv.module_help(module.__name__) if fv.flags_by_module_dict() else "")
            return 0
        if distributed.enabled():  # after --help: a help text needs no cluster
            distributed.initialize_from_env()
        rest = config_lib.parse_with_config(fv, full_argv)
        positional = getattr(module, "POSITIONAL", None)  # a flag that may be given bare
        if rest and positional and len(rest) == 1 and fv[positional].value is None:
            fv[positional].value = rest[0]
        elif rest:
            print(f"pivotrl {name}: unexpected arguments {rest}", file=sys.stderr)
            return 2
        return int(module.main(fv) or 0)
    except flags.Error as e:
        print(f"pivotrl {name}: {e}", file=sys.stderr)
        return 2
    except PivotError as e:
        print(f"pivotrl {name}: error: {e}", file=sys.stderr)
        return 2


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
