"""Render nbs/index.ipynb to Markdown (README.md) without quarto.

Usage: python tools/make_readme.py [--check]
Cells marked `#| hide` are left out, other `#|` directive lines are dropped, and the text outputs
saved in the notebook are shown under each code cell. With --check, exit 1 if README.md differs.
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def directives(src):
    return [l[3:].strip() for l in src.splitlines() if l.startswith("#|")]

def render(nb_path=ROOT / "nbs" / "index.ipynb") -> str:
    nb = json.loads(Path(nb_path).read_text())
    out = ["<!-- generated from nbs/index.ipynb by `make readme`; edit the notebook, not this file -->", ""]
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        ds = directives(src)
        if "hide" in ds or any(d.startswith("default_exp") for d in ds): continue
        if cell["cell_type"] == "markdown":
            out += [src.strip(), ""]
        elif cell["cell_type"] == "code":
            code = "\n".join(l for l in src.splitlines() if not l.startswith("#|")).strip()
            if code: out += ["```python", code, "```", ""]
            texts = []
            for o in cell.get("outputs", []):
                if o.get("output_type") == "stream": texts.append("".join(o["text"]))
                elif "data" in o and "image/png" in o["data"]: out += ["*(a plot: see this page in the docs site, `make docs`)*", ""]
                elif "data" in o and "text/plain" in o["data"]: texts.append("".join(o["data"]["text/plain"]))
            if texts: out += ["```", "".join(t if t.endswith("\n") else t + "\n" for t in texts).rstrip("\n"), "```", ""]
    return "\n".join(out).rstrip() + "\n"

if __name__ == "__main__":
    text = render()
    readme = ROOT / "README.md"
    if "--check" in sys.argv:
        if not readme.exists() or readme.read_text() != text:
            print("error: README.md does not match nbs/index.ipynb; run `make readme`", file=sys.stderr)
            sys.exit(1)
    else:
        readme.write_text(text)
