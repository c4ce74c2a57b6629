"""The notebooks execute top to bottom, and each .ipynb matches its percent-format .py twin."""

from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.py"))
# What each notebook's outputs must show (text, and whether a plot).
EXPECTED = {
    "01_quickstart": (["reward 1.0", "candidates"], False),
    "02_pivot_analysis": (["zero-signal fraction", "[pivot]", "[zero_variance]"], True),
    "03_custom_verifier": (["agreement on", "{'same_flags'}"], False),
    "04_scaling": (
        ["8 devices", "GB per device", "P(None, 'expert', 'tensor', 'fsdp')", "MiB per device"],
        False,
    ),
}


def test_every_notebook_has_its_checks():
    assert sorted(EXPECTED) == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("py", NOTEBOOKS, ids=lambda p: p.stem)
def test_ipynb_is_in_sync(py):
    ipynb = py.with_suffix(".ipynb")
    assert ipynb.exists(), f"run: jupytext --to ipynb {py}"
    want = [c.source for c in jupytext.read(py).cells]
    got = [c.source for c in nbformat.read(ipynb, as_version=4).cells]
    assert got == want, f"{ipynb.name} differs from {py.name}: jupytext --sync {py}"


@pytest.mark.slow
@pytest.mark.parametrize("py", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(py):
    nb = jupytext.read(py)
    NotebookClient(
        nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(py.parent)}}
    ).execute()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    markers, plot = EXPECTED[py.stem]
    assert all(m in text for m in markers), [m for m in markers if m not in text]
    assert plot == any("image/png" in o.get("data", {}) for o in outputs)
