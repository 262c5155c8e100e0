"""Bad-input corpus: a folder mixing 28 bad kinds of file with good ones is ingested with `cllm add`:
every good file goes in, each bad one is reported once, in one line, with its reason, nothing outside the folder
is read, and nothing else changes (the model's state is byte for byte the same).

Usage: python bench/bad_inputs.py [--quick]
"""
import json, os, subprocess, tempfile
from pathlib import Path
from common import parser, BIN
from crystalline_nb.workspace import Workspace

SECRET = "-----BEGIN OPENSSH PRIVATE KEY----- never train on me"


def make_corpus(d: Path, outside: Path):
    "Write the good and the bad files; returns (good names, bad names)."
    para = "A long enough paragraph about the lattice and its clock rings. " * 8
    nb = {"cells": [{"cell_type": "markdown", "source": ["# Analysis\n", "What the clock rings mean."]},
                    {"cell_type": "code", "source": ["x = 12 * 60\n"],
                     "outputs": [{"data": {"image/png": "iVBORw0KGgo" * 5000}}]}]}
    good = {
        "notes.txt": "Plain notes about clocks.\n",
        "paper.md": "# Title\n\nBody text.\n",
        "code.py": "def f():\n    return 1\n",
        "page.html": f"<html><body><article><p>{para}</p></article></body></html>",
        "docs.jsonl": '{"text": "one"}\n{"text": "two"}\n',
        "lone.jsonl": '{"text": "a lone \\ud800 surrogate"}\n',
        "analysis.ipynb": json.dumps(nb),
        "one_line.txt": "word " * 2_000_000,
    }  # 10 MB without a newline
    for k, v in good.items():
        (d / k).write_text(v)
    bad = {"binary.txt": b"abc\x00def", "latin1.txt": "caf\xe9 cr\xe8me".encode("latin-1"), "empty.txt": b"",
           "blank.md": b"   \n\n", "image.png": b"\x89PNG\r\n\x1a\n", "broken.json": b"{not json",
           "script.html": b"<html><script>x()</script></html>", "cut.txt": "ok then \u00e9".encode()[:-1],
           "bad.pdf": b"%PDF-1.4 nonsense", "deep.json": b"[" * 200_000, "notext.json": b'{"title": 1}',
           "emptylist.json": b"[]", "badline.jsonl": b'{"text": "fine"}\n{oops\n', "nolines.jsonl": b"\n\n  \n",
           "utf16.txt": "hello".encode("utf-16"), "controls.txt": b"\x01\x02\x03\x7f\n", "archive.zip": b"PK\x03\x04",
           "program.exe": b"MZ\x90\x00", "latin1.json": b'{"text": "caf\xe9"}', "broken.ipynb": b"{cells",
           "boundary.txt": b"a" * ((1 << 20) - 1) + b"\xff" + b"b" * 100}  # invalid byte at the chunk boundary
    for k, v in bad.items():
        (d / k).write_bytes(v)
    with open(d / "too_big.json", "wb") as f:  # above the 64 MiB parse limit
        f.write(b'{"text": "'), f.write(b"x" * (65 << 20)), f.write(b'"}')
    with open(d / "huge_line.jsonl", "wb") as f:  # one line above the 64 MiB line limit
        f.write(b'{"text": "'), f.write(b"y" * (65 << 20)), f.write(b'"}\n')
    os.symlink(d / "loop", d / "loop")
    os.symlink(d / "gone", d / "dangling.txt")
    os.mkfifo(d / "fifo.txt")
    (outside / "id_rsa").write_text(SECRET)
    os.symlink(outside / "id_rsa", d / "notes")  # a link out of the dropped folder
    os.symlink(outside, d / "elsewhere")  # a link to a folder outside
    links = ["loop", "dangling.txt", "fifo.txt", "notes", "elsewhere", "too_big.json", "huge_line.jsonl"]
    return list(good), [*bad, *links]


def main():
    parser(__doc__).parse_args()
    home = Path(tempfile.mkdtemp())
    d, outside = home / "mixed", home / "private"
    d.mkdir()
    outside.mkdir()
    good, bad = make_corpus(d, outside)
    ws = Workspace(home)
    ws.create("m", preset_name="nano")
    state_before = (ws.path("m") / "state.json").read_text()
    r = subprocess.run(
        [str(BIN / "cllm"), "--home", str(home), "add", "m", str(d), "--verbose"], capture_output=True, text=True
    )
    skipped = [ln for ln in r.stderr.splitlines() if ln.startswith("skipped ")]
    names = sorted(Path(ln.split(": ", 1)[0][8:]).name for ln in skipped)
    print(r.stdout.strip())
    for ln in skipped:
        print("  " + ln.replace(str(d) + "/", ""))
    rows = ws.queue("m").rows()
    c = ws.queue("m").corpus()
    text = ws.load("m").tokenizer.decode(c.read(0, len(c)).tolist())
    checks = {
        "every good file ingested": sorted(Path(x["source"]).name for x in rows) == sorted(good),
        "each bad file reported once": names == sorted(bad) and len(skipped) == len(bad),
        "one line each, no traceback": "Traceback" not in r.stderr and all("\n" not in ln for ln in skipped),
        "nothing read outside the folder": "PRIVATE KEY" not in text,
        "notebook read as its cells": "What the clock rings mean." in text and "iVBORw0KGgo" not in text,
        "model state unchanged": (ws.path("m") / "state.json").read_text() == state_before,
        "exit status 0": r.returncode == 0,
    }
    print(f"\n{len(bad)} bad kinds, {len(good)} good files: {len(rows)} ingested, {len(skipped)} reported")
    for k, v in checks.items():
        print(f"  {k}: {'yes' if v else 'NO'}")
    if not all(checks.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
