"""The package's shape, checked from its source: methods defined where readers and the docs see them, layers that only
import downwards, no reaching into another module's private names."""

import ast
from pathlib import Path
import pytest

PKG = Path(__file__).resolve().parent.parent / "crystalline_nb"
# from the ground up: a module may import only modules before it
LAYERS = ["core", "config", "device", "lattice", "model", "tokenizer", "ingest", "files", "readahead", "epochs",
          "queue", "workspace", "history", "generate", "evaluate", "export", "crawler", "trainer", "distributed",
          "panel", "cli"]
OWN = ("__init__", "__main__", "_modidx")  # written by hand (the version, `python -m`) or by nbdev (the index)
MODULES = {p.stem: ast.parse(p.read_text()) for p in PKG.glob("*.py") if p.stem not in OWN}


def imports(tree):
    "(module, names) of every import of a crystalline_nb module, at any depth (imports inside functions too)."
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 1 or mod.startswith("crystalline_nb"):
                name = mod.removeprefix("crystalline_nb").lstrip(".")
                yield name, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("crystalline_nb."):
                    yield a.name.split(".")[1], []


def test_every_module_has_a_layer():
    assert set(MODULES) == set(LAYERS)


@pytest.mark.parametrize("mod", LAYERS)
def test_imports_only_run_downwards(mod):
    for name, _ in imports(MODULES[mod]):
        if name == "":  # `from crystalline_nb import __version__`
            continue
        assert LAYERS.index(name) < LAYERS.index(mod), f"{mod} imports {name}, which sits above it"


@pytest.mark.parametrize("mod", LAYERS)
def test_no_private_names_of_other_modules(mod):
    for name, names in imports(MODULES[mod]):
        private = [n for n in names if n.startswith("_") and n != "__version__"]
        assert not private, f"{mod} imports private names {private} from {name or 'crystalline_nb'}"


@pytest.mark.parametrize("mod", LAYERS)
def test_no_methods_attached_by_assignment(mod):
    "Methods are defined in the class body or with fastcore's @patch, never as `Class.name = _function`."
    classes = {n.name for n in ast.walk(MODULES[mod]) if isinstance(n, ast.ClassDef)}
    for node in MODULES[mod].body:
        if not isinstance(node, ast.Assign):
            continue
        targets = [t for tgt in node.targets for t in (tgt.elts if isinstance(tgt, ast.Tuple) else [tgt])]
        for t in targets:
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name):
                assert t.value.id not in classes, f"{mod}: {t.value.id}.{t.attr} is attached by assignment"


def test_the_checks_can_fail():
    "The checks above catch what they look for."
    bad = ast.parse("from crystalline_nb.workspace import _busy_lock\nclass A: pass\nA.run = _run\n")
    assert [n for _, names in imports(bad) for n in names] == ["_busy_lock"]
    assert isinstance(bad.body[2].targets[0], ast.Attribute)


@pytest.mark.parametrize("mod", LAYERS)
def test_one_statement_per_line_and_lines_within_120(mod):
    "No `;` between statements; no line over 120 characters except in nbdev's generated `__all__` list."
    import io, tokenize
    src = (PKG / f"{mod}.py").read_text()
    tokens = tokenize.generate_tokens(io.StringIO(src).readline)
    semis = [t.start[0] for t in tokens if t.type == tokenize.OP and t.string == ";"]
    assert not semis, f"{mod}: semicolons on lines {semis}"
    generated = set()
    for node in MODULES[mod].body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
            generated |= set(range(node.lineno, node.end_lineno + 1))
    long = [i for i, ln in enumerate(src.splitlines(), 1) if len(ln) > 120 and i not in generated]
    assert not long, f"{mod}: lines over 120 characters: {long}"


HOUSE = sorted((PKG.parent / "tests").glob("*.py")) + sorted((PKG.parent / "bench").glob("*.py"))


@pytest.mark.parametrize("path", HOUSE, ids=[f"{p.parent.name}/{p.name}" for p in HOUSE])
def test_tests_and_benchmarks_keep_the_house_rules(path):
    "The same two rules in tests/ and bench/: one statement a line, lines within 120 characters."
    import io, tokenize
    src = path.read_text()
    tokens = tokenize.generate_tokens(io.StringIO(src).readline)
    semis = [t.start[0] for t in tokens if t.type == tokenize.OP and t.string == ";"]
    assert not semis, f"{path.name}: semicolons on lines {semis}"
    long = [i for i, ln in enumerate(src.splitlines(), 1) if len(ln) > 120]
    assert not long, f"{path.name}: lines over 120 characters: {long}"
