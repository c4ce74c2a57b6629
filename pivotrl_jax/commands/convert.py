"""Convert a model folder between the HF safetensors layout and the native orbax layout.

    pivotrl convert --input hf_dir --output native_dir --to orbax
    pivotrl convert --input native_dir --output hf_dir --to hf [--max-shard-mb 5000]

Parameters keep their stored dtype, so HF -> orbax -> HF reproduces the tensors bit for bit;
tokenizer and generation files are copied along. The output folder must be new or empty.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from pivotrl_jax.errors import InputError
from pivotrl_jax.models import export_hf, is_native, load_hf, load_native, save_native


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("input", None, "Model folder to read.", flag_values=fv, required=True)
    flags.DEFINE_string(
        "output", None, "Folder to write (new or empty).", flag_values=fv, required=True
    )
    flags.DEFINE_enum(
        "to", None, ["orbax", "hf"], "Layout to write.", flag_values=fv, required=True
    )
    flags.DEFINE_integer(
        "max_shard_mb",
        5000,
        "Largest safetensors shard for --to hf (MiB).",
        lower_bound=1,
        flag_values=fv,
    )
    flags.DEFINE_alias("max-shard-mb", "max_shard_mb", flag_values=fv)


def main(fv: flags.FlagValues) -> int:
    src, out = Path(fv.input), Path(fv.output)
    if not src.is_dir():
        raise InputError("not a folder", path=src)
    if out.exists() and any(out.iterdir()):
        raise InputError("output folder exists and is not empty", path=out)
    if fv.to == "orbax":
        if is_native(src):
            raise InputError("already in the orbax layout (it has params/)", path=src)
        model, config = load_hf(src)
        save_native(model, config, out, aux_from=src)
    else:
        if not is_native(src):
            raise InputError("not an orbax-layout folder (no params/ beside config.json)", path=src)
        model, config = load_native(src)
        export_hf(model, config, out, max_shard_bytes=fv.max_shard_mb * 2**20, aux_from=src)
    print(f"wrote {fv.to} layout -> {out}")
    return 0
