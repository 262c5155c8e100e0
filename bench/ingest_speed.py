"""Ingestion speed (MB/s) for the byte and BPE tokenizers, on generated and on real text.

Usage: python bench/ingest_speed.py [--quick] [--big-mb N] [--paths P ...]
1. The same text is ingested from 100 files through `Queue.add_paths` (read, decode, clean, hash, tokenize,
   write shards, manifest) and, separately, tokenized alone in memory by one `encode` call per file (for BPE: the
   tokenizer's single-threaded encoder). ingest / alone > 1 means the whole ingestion path beats the tokenizer
   alone (BPE ingestion encodes long texts in pieces, and short files together, on every core). --quick: 4 MB in
   files of 40 kB (encoded together), and the full run 20 MB in files of 200 kB (each cut into pieces).
2. Real material nobody here wrote, byte tokenizer, with near-duplicate detection on (the default of `cllm add`):
   the Python standard library's source files copied into a folder (12 MB with --quick, all of it, about 30 MB,
   otherwise), and one large file of that source repeated (--big-mb, 200 by default, 40 with --quick).
--paths: only this: the files and folders given, added into a fresh byte model (near-duplicates checked), in MB/s.
--make-real DIR: write a folder of real text to time with --paths: 100 files of about 2 MB, each the distinct UTF-8
   source and text files of this machine's Python installation, site-packages and /usr/share/doc joined in name order.
Every figure of real material is printed beside a reference pass over the same files in the same run (each file
read once, expanded when compressed, decoded as UTF-8 and hashed with SHA-256, in one process: `common.reference_pass`),
run before and after the ingestion; their ratio (reference seconds / ingestion seconds) is the figure that travels
between machines. The target of the byte path on a 2-core machine: ratio 0.10 on the real folders (100 MB/s where
the reference pass reads about 1 GB/s).
"""
import shutil, sysconfig, tempfile, time
from pathlib import Path
from common import parser, corpus_text, files_under, machine, reference_pass
from crystalline_nb.workspace import Workspace


def stdlib_sources(limit: int) -> list[Path]:
    "The standard library's `.py` files (not site-packages), in name order, up to `limit` bytes."
    root = Path(sysconfig.get_paths()["stdlib"])
    out, size = [], 0
    for p in sorted(root.rglob("*.py")):
        if "site-packages" in p.parts or not p.is_file() or p.is_symlink():
            continue
        size += p.stat().st_size
        if size > limit:
            break
        out.append(p)
    return out


def utf8(b: bytes) -> bool:
    try:
        b.decode()
        return True
    except UnicodeDecodeError:
        return False


def timed_add(ws: Workspace, name: str, paths, **kw):
    "Seconds to add `paths` to a new byte model's queue, and the report."
    ws.create(name, preset_name="nano")
    t0 = time.perf_counter()
    rep = ws.queue(name).add_paths(paths, **kw)
    return time.perf_counter() - t0, rep


def generated(a, ws: Workspace):
    mb = 4 if a.quick else 20
    text = corpus_text(mb * 1_000_000)
    d = Path(tempfile.mkdtemp()) / "files"
    d.mkdir()
    n = 100
    k = len(text) // n
    for i in range(n):
        (d / f"f{i:03d}.txt").write_text(f"file {i}\n" + text[i * k:(i + 1) * k])
    size = sum(p.stat().st_size for p in d.iterdir()) / 1e6
    ws.create("byte", preset_name="nano")
    ws.create("bpe", preset_name="nano", tokenizer="bpe", texts=[text[:2_000_000]], vocab_size=4096)
    print(f"1. generated: {size:.1f} MB of text in {n} files\n")
    print(f"{'tokenizer':<10}{'ingest MB/s':>12}{'tokenize alone MB/s':>22}{'ratio':>8}{'tokens':>14}")
    for name in ("byte", "bpe"):
        q = ws.queue(name)
        texts = [p.read_text() for p in sorted(d.iterdir())]
        t0 = time.perf_counter()
        for t in texts:
            q.tokenizer.encode(t)  # one call per text: the tokenizer's single-threaded encode
        alone = time.perf_counter() - t0
        t0 = time.perf_counter()
        rep = q.add_paths([d], near_duplicates=False)  # the text repeats: every file must go in
        ing = time.perf_counter() - t0
        assert len(rep.added) == n, rep.summary()
        print(f"{name:<10}{size / ing:>12.1f}{size / alone:>22.1f}{alone / ing:>8.2f}{rep.tokens:>14,}")


def real(a, ws: Workspace):
    files = stdlib_sources(12_000_000 if a.quick else 1 << 40)
    root = Path(sysconfig.get_paths()["stdlib"])
    d = Path(tempfile.mkdtemp()) / "stdlib"
    for p in files:
        dest = d / p.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dest)
    size = sum(p.stat().st_size for p in files) / 1e6
    big_mb = a.big_mb or (40 if a.quick else 200)
    whole = b"\n".join(b for b in map(Path.read_bytes, files) if utf8(b))  # a few declare latin-1 (PEP 263)
    big = d.parent / "big.py.txt"
    with open(big, "wb") as f:
        for _ in range(big_mb * 1_000_000 // len(whole) + 1):
            f.write(whole)
        f.truncate(big_mb * 1_000_000)
    print(f"\n2. real material, byte tokenizer, near-duplicates checked: the standard library's source")
    print(f"{'input':<44}{'MB':>8}{'seconds':>9}{'MB/s':>8}{'files/s':>9}{'/ reference':>13}")
    for label, path, mb, n in ((f"folder of {len(files)} files", d, size, len(files)),
                               ("one file", big, big_mb, 1)):
        dt, rep, ratio = with_reference(ws, f"real{n}", [path])
        assert rep.added, rep.summary()
        print(f"{label:<44}{mb:>8.1f}{dt:>9.2f}{mb / dt:>8.1f}{n / dt:>9.0f}{ratio:>13.3f}")
        print(f"  {rep.summary()}")


def make_real(dest: Path, files: int = 100, size: int = 2_000_000):
    "Write `files` files of about `size` bytes of distinct real text under `dest` (see the usage)."
    roots = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], "/usr/share/doc",
             "/usr/share/common-licenses"]
    suffixes = {".py", ".pyi", ".txt", ".md", ".rst", ".c", ".h"}
    dest.mkdir(parents=True)
    seen, buf, n = set(), [], 0
    for root in roots:
        for p in sorted(Path(root).rglob("*")):
            if not p.is_file() or p.is_symlink() or not (p.suffix in suffixes or "licenses" in root):
                continue
            b = p.read_bytes()
            if len(b) < 200 or b"\x00" in b or not utf8(b) or hash(b) in seen:
                continue
            seen.add(hash(b))
            buf.append(b)
            if sum(map(len, buf)) >= size:
                (dest / f"part{n:03d}.txt").write_bytes(b"\n\n".join(buf))
                buf, n = [], n + 1
                if n == files:
                    return print(f"{files} files of real text in {dest}")
    raise SystemExit(f"only {n} files of {size:,} bytes of text found on this machine")


def with_reference(ws: Workspace, name: str, paths, **kw):
    """`timed_add` between two reference passes over the same files (the first also brings them into the page
    cache: the faster of the two is taken); prints and returns (seconds, report, reference / ingestion seconds)."""
    n1, r1 = reference_pass(paths)
    dt, rep = timed_add(ws, name, paths, **kw)
    n2, r2 = reference_pass(paths)
    ref = min(r1, r2)  # the first may read the disk; the ingestion read from the cache
    print(f"  reference pass (read, expand, decode, SHA-256; one process): {n1 / 1e6:.0f} MB of text (compressed files "
          f"expanded) in {r1:.2f} s and {r2:.2f} s, {n1 / 1e6 / ref:.1f} MB/s; ratio reference / ingestion seconds: "
          f"{ref / dt:.3f}")
    return dt, rep, ref / dt


def given(paths: list[str], ws: Workspace):
    "MB/s of adding `paths` (files and folders) into a fresh byte model, beside the reference pass."
    files = files_under(paths)
    size = sum(f.stat().st_size for f in files)
    print(f"{machine()}; {len(files):,} files")
    dt, rep, ratio = with_reference(ws, "given", paths)
    print(f"{size / 1e6:.0f} MB in {dt:.2f} s: {size / 1e6 / dt:.1f} MB/s, {rep.tokens:,} tokens; ratio {ratio:.3f}")
    print(f"  {rep.summary()}")


def main():
    ap = parser(__doc__)
    ap.add_argument("--big-mb", type=int, default=0, help="size of the one large file (MB)")
    ap.add_argument("--paths", nargs="+", default=None, help="files and folders to time alone")
    ap.add_argument("--make-real", type=Path, default=None, help="write 100 files of real text there, then stop")
    a = ap.parse_args()
    if a.make_real:
        return make_real(a.make_real)
    home = tempfile.mkdtemp()
    ws = Workspace(home)
    if a.paths:
        given(a.paths, ws)
        shutil.rmtree(home)
        return
    generated(a, ws)
    real(a, ws)


if __name__ == "__main__":
    main()
