"""The demo's stage cache: a stage runs again when its settings or the task generators' source
change, and not otherwise."""

from __future__ import annotations

import shutil
from pathlib import Path

import pivotrl_jax.envs as envs
from pivotrl_jax import demo


def test_generators_fingerprint_follows_the_source(tmp_path):
    src = Path(envs.__file__).parent
    copy = tmp_path / "envs"
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert demo.generators_fingerprint(copy) == demo.generators_fingerprint()
    ood = copy / "ood.py"
    ood.write_text(ood.read_text().replace("lamp mirror", "lamp meadow"))
    assert demo.generators_fingerprint(copy) != demo.generators_fingerprint()


def test_a_stage_runs_again_only_when_its_settings_or_an_earlier_stage_change(tmp_path):
    calls: list[str] = []

    def pipeline(data_settings: dict, base_settings: dict) -> list[str]:
        st = demo.Stages(tmp_path)
        out = tmp_path / "out"
        st.run("data", data_settings, [out / "data"], lambda: calls.append("data"))
        st.run("base", base_settings, [out / "base"], lambda: calls.append("base"))
        return st.skipped

    assert pipeline({"generators": "a"}, {"steps": 1}) == []
    assert pipeline({"generators": "a"}, {"steps": 1}) == ["data", "base"]
    assert pipeline({"generators": "b"}, {"steps": 1}) == []  # new data: base again too
    assert pipeline({"generators": "b"}, {"steps": 2}) == ["data"]
    assert calls == ["data", "base", "data", "base", "base"]
