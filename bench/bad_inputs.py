"""Bad-input corpus: a directory mixing every bad kind of file with good ones is ingested with `cllm add`:
the good files go in, each bad one is reported once with its reason, and nothing else changes.

Usage: python bench/bad_inputs.py [--quick]
"""
import json, os, subprocess, tempfile
from pathlib import Path
from common import parser, BIN
from crystalline_nb.workspace import Workspace


def main():
    parser(__doc__).parse_args()
    home = Path(tempfile.mkdtemp()); d = home / "mixed"; d.mkdir()
    good = {"notes.txt": "Plain notes about clocks.\n", "paper.md": "# Title\n\nBody text.\n", "code.py": "def f():\n    return 1\n",
            "page.html": "<html><body><article><p>" + "A long enough paragraph about the lattice. " * 8 + "</p></article></body></html>",
            "docs.jsonl": '{"text": "one"}\n{"text": "two"}\n'}
    for k, v in good.items(): (d / k).write_text(v)
    bad = {"binary.txt": b"abc\x00def", "latin1.txt": "caf\xe9 cr\xe8me".encode("latin-1"), "empty.txt": b"", "blank.md": b"   \n\n",
           "image.png": b"\x89PNG\r\n\x1a\n", "broken.json": b"{not json", "script.html": b"<html><script>x()</script></html>",
           "cut.txt": "ok then \u00e9".encode()[:-1], "bad.pdf": b"%PDF-1.4 nonsense"}
    for k, v in bad.items(): (d / k).write_bytes(v)
    os.symlink(d / "loop", d / "loop"); os.symlink(d / "gone", d / "dangling.txt")
    huge_line = d / "one_line.txt"; huge_line.write_text("word " * 2_000_000)        # 10 MB without a newline: fine
    ws = Workspace(home); ws.create("m", preset_name="nano")
    state_before = (ws.path("m") / "state.json").read_text()
    r = subprocess.run([str(BIN / "cllm"), "--home", str(home), "add", "m", str(d)], capture_output=True, text=True)
    skipped = [l for l in r.stderr.splitlines() if l.startswith("skipped ")]
    names = sorted(Path(l.split(": ", 1)[0][8:]).name for l in skipped)
    print(r.stdout.strip())
    for l in skipped: print("  " + l.replace(str(d) + "/", ""))
    rows = ws.queue("m").rows()
    ok = (sorted(Path(x["source"]).name for x in rows) == sorted([*good, "one_line.txt"]) and
          names == sorted([*bad, "loop", "dangling.txt"]) and len(skipped) == len(bad) + 2 and
          (ws.path("m") / "state.json").read_text() == state_before and r.returncode == 0)
    print(f"\n{len(rows)} good files ingested, {len(skipped)} bad files each reported once, model state unchanged:", "yes" if ok else "NO")
    if not ok: raise SystemExit(1)


if __name__ == "__main__":
    main()
