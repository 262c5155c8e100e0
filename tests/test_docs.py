"The docs site builds from the notebooks (index plus a page per module) and README.md matches nbs/index.ipynb."
import subprocess, sys
from pathlib import Path
from conftest import ROOT, BIN


def test_readme_matches_index():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "make_readme.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    head = (ROOT / "README.md").read_text().splitlines()[:12]
    assert any("make demo" in l for l in head) and any("make test" in l for l in head)


def test_docs_site_builds(tmp_path):
    subprocess.run(["cp", "-r", str(ROOT / "nbs"), str(ROOT / "pyproject.toml"), str(tmp_path)], check=True)
    r = subprocess.run([str(BIN / "nbdev-proc-nbs")], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([str(BIN / "smalldocs"), "render", "_proc"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    site = tmp_path / "_proc" / "_docs"
    assert (site / "index.html").exists()
    modules = [p.stem for p in (ROOT / "nbs").glob("[0-9]*.ipynb")]
    assert modules
    for m in modules:
        page = site / f"{m}.html"
        assert page.exists(), f"no docs page for {m}"
        assert len(page.read_text()) > 2000
    tutorials = [p.stem for p in (ROOT / "nbs" / "tutorials").glob("*.ipynb")]
    assert len(tutorials) >= 4
    for t in tutorials: assert (site / "tutorials" / f"{t}.html").exists(), f"no docs page for tutorial {t}"
    index = (site / "index.html").read_text()
    assert "Tutorials" in index and "API reference" in index                     # navigation separates the two
