"The docs site builds from the notebooks (index plus a page per module) and README.md matches nbs/index.ipynb."
import html
import re
import subprocess
import sys
import pytest
from conftest import ROOT, BIN


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "The docs site, built once for the tests of this file from a copy of the notebooks."
    tmp = tmp_path_factory.mktemp("docs")
    subprocess.run(["cp", "-r", str(ROOT / "nbs"), str(ROOT / "pyproject.toml"), str(tmp)], check=True)
    r = subprocess.run([str(BIN / "nbdev-proc-nbs")], cwd=tmp, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([str(BIN / "smalldocs"), "render", "_proc"], cwd=tmp, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return tmp / "_proc" / "_docs"


def plain(page) -> str:
    "The text of a docs page, without its tags, on one line."
    return " ".join(html.unescape(re.sub("<[^>]+>", "", page.read_text())).split()).replace("\u2019", "'")


def test_readme_matches_index():
    r = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_readme.py"), "--check"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    head = (ROOT / "README.md").read_text().splitlines()[:12]
    assert any("make demo" in l for l in head) and any("make test" in l for l in head)


def test_docs_site_builds(site):
    assert (site / "index.html").exists()
    modules = [p.stem for p in (ROOT / "nbs").glob("[0-9]*.ipynb")]
    assert modules
    for m in modules:
        page = site / f"{m}.html"
        assert page.exists(), f"no docs page for {m}"
        assert len(page.read_text()) > 2000
    tutorials = [p.stem for p in (ROOT / "nbs" / "tutorials").glob("*.ipynb")]
    assert len(tutorials) >= 4
    for t in tutorials:
        assert (site / "tutorials" / f"{t}.html").exists(), f"no docs page for tutorial {t}"
    index = (site / "index.html").read_text()
    assert "Tutorials" in index and "API reference" in index  # navigation separates the two


def test_no_page_shows_a_warning_or_a_traceback(site):
    "Saved outputs are what the site shows: none may be a warning (with a machine's paths) or an error."
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 20
    bad = [f"{p.relative_to(site)}: {m.group(0)}" for p in pages
           for m in [re.search(r".{0,60}(Warning:|Traceback).{0,80}", plain(p))] if m]
    assert not bad, "\n".join(bad)


def _public_methods():
    "(docs page, Class.method, docstring) of every public method of the classes users drive."
    import inspect
    from crystalline_nb.workspace import Workspace
    from crystalline_nb.queue import Queue
    from crystalline_nb.epochs import Corpus, EpochPlan
    from crystalline_nb.trainer import Trainer
    from crystalline_nb.crawler import Crawler
    from crystalline_nb import panel
    page = {p.stem.split("_", 1)[1]: p.stem for p in (ROOT / "nbs").glob("[0-9]*.ipynb")}  # module -> notebook
    tabs = [panel.ControlPanel, panel.PanelTab, panel.ModelsTab, panel.DataTab, panel.TrainTab, panel.GenerateTab,
            panel.HistoryTab, panel.LossPlot]
    classes = {page["workspace"]: [Workspace], page["queue"]: [Queue], page["trainer"]: [Trainer],
               page["crawler"]: [Crawler], page["panel"]: tabs, page["epochs"]: [Corpus, EpochPlan]}
    out = []
    for page, classes in classes.items():
        for cls in classes:
            for name, fn in vars(cls).items():
                if name.startswith("_") or not inspect.isfunction(fn):
                    continue
                out.append((page, f"{cls.__name__}.{name}", inspect.getdoc(fn)))
    return out


def test_api_reference_lists_every_public_method(site):
    "Each public method of the main classes has an entry, with its docstring, on its module's page."
    methods = _public_methods()
    assert len(methods) > 60 and {"Trainer.run", "Queue.add", "Workspace.create", "ControlPanel.refresh",
                                  "TrainTab.start", "Crawler.run"} <= {m for _, m, _ in methods}
    missing = []
    for page, name, doc in methods:
        text = (site / f"{page}.html").read_text()
        heads = {html.unescape(re.sub("<[^>]+>", "", h)).strip()
                 for h in re.findall(r"<h[234][^>]*>(.*?)</h[234]>", text)}
        if (
            name not in heads
            or not doc
            or " ".join(doc.replace("`", "").split())[:40] not in plain(site / f"{page}.html")
        ):
            missing.append(name)
    assert not missing, f"no API entry with its docstring for: {', '.join(missing)}"
