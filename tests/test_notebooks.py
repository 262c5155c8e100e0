"Every notebook in nbs/ runs under nbdev's test runner (honouring #| notest and the slow/browser flags)."
from pathlib import Path
import pytest
from nbdev.test import test_nb as run_nb

ROOT = Path(__file__).resolve().parent.parent
NBS = sorted(
    p for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts and not p.name.startswith("_")
)


@pytest.mark.parametrize("nb", NBS, ids=[str(p.relative_to(ROOT / "nbs")) for p in NBS])
def test_notebook(nb, monkeypatch):
    monkeypatch.chdir(nb.parent)
    monkeypatch.setenv("IN_TEST", "1")          # tutorials take their short paths
    ok, secs = run_nb(nb, skip_flags=["slow", "browser"], basepath=str(ROOT))
    assert ok, f"{nb.name} failed (run `nbdev-test {nb}` to see why)"
