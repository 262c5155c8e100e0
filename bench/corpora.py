"""Ingesting a compressed JSON lines shard (`.jsonl.zst`) and a Parquet table: MB/s, peak memory, and the same bytes'
reference pass.

Usage: python bench/corpora.py [--quick] [--gb G] [--keep DIR]
A `.jsonl.zst` file of G GB (1 by default; 0.05 with --quick) is made from real text of this machine (the Python
installation's source files and /usr/share/doc, cut into rows of 2 to 8 kB, each row numbered so that none repeats),
then added to a new byte model by `cllm add` in a subprocess (read, expand, parse, clean, hash, find paragraphs,
tokenize, write: the whole path, reading processes included), while its memory, with that of its reading processes,
is sampled every 50 ms. Beside it, in the same run, the reference pass over the same file: read, expand, decode the
UTF-8 and hash it once, in one process, with nothing else (`zstandard` and `hashlib`). Printed: both MB/s (of
expanded bytes), the ratio, and the peak memory of the tree of processes. Then the same rows as a Parquet file of
row groups of 10,000 rows, the same way (its reference: pyarrow reading the text column, encoding it to UTF-8 and
hashing it). The goal: peak memory under 500 MB for the 1 GB file, whatever its size. The rows repeat the machine's
text about four times over (numbered, their paragraphs the same), so `cllm add`'s row checks leave most of them out
as near-duplicates (said in its first line): the figure includes those checks.
"""
import hashlib, io, json, os, shutil, subprocess, sysconfig, tempfile, threading, time
from pathlib import Path
import psutil
import zstandard
from common import parser, BIN


def sources(limit: int):
    "Texts of this machine (the Python installation's .py files, /usr/share/doc's text files), up to `limit` bytes."
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path("/usr/share/doc")]
    size = 0
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.suffix not in (".py", ".txt", ".md", ".rst", "") or not p.is_file() or p.is_symlink():
                continue
            try:
                t = p.read_text()
            except (UnicodeDecodeError, OSError):
                continue
            if len(t) > 2000:
                yield t
                size += len(t)
                if size > limit:
                    return


def make_jsonl_zst(path: Path, gb: float) -> tuple[int, int]:
    "Write rows of real text, numbered, to a .jsonl.zst of about `gb` GB; (compressed bytes, expanded bytes)."
    target, expanded, base = int(gb * 1e9), 0, list(sources(80_000_000))
    cctx = zstandard.ZstdCompressor(level=3, write_checksum=True)
    with open(path, "wb") as f, cctx.stream_writer(f) as w:
        n = 0
        while f.tell() < target:
            for t in base:
                for at in range(0, len(t), 6000):
                    n += 1
                    line = (json.dumps({"id": n, "text": f"[{n}] " + t[at: at + 6000]}) + "\n").encode()
                    w.write(line)
                    expanded += len(line)
                if f.tell() >= target:
                    break
    return path.stat().st_size, expanded


def reference_zst(path: Path) -> float:
    "Seconds to read, expand, decode and hash the file once, in this process."
    t0, h = time.perf_counter(), hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in zstandard.ZstdDecompressor().read_to_iter(f, write_size=1 << 20):
            chunk.decode("utf-8", "ignore")
            h.update(chunk)
    return time.perf_counter() - t0


def reference_parquet(path: Path) -> float:
    import pyarrow.parquet as pq
    t0, h = time.perf_counter(), hashlib.sha256()
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024, columns=["text"]):
        for t in batch.column(0).to_pylist():
            h.update(t.encode())
    return time.perf_counter() - t0


def timed_add(home: Path, name: str, path: Path) -> tuple[float, float]:
    "Seconds and peak MiB (the `cllm add` process and its reading processes together) to add `path`."
    env = dict(os.environ, CLLM_HOME=str(home))
    subprocess.run([str(BIN / "cllm"), "new", name, "--preset", "nano"], env=env, check=True, capture_output=True)
    t0 = time.perf_counter()
    p = subprocess.Popen([str(BIN / "cllm"), "add", name, str(path)], env=env, stdout=subprocess.PIPE, text=True)
    peak, proc = [0.0], psutil.Process(p.pid)

    def sample():
        while p.poll() is None:
            try:
                tree = [proc] + proc.children(recursive=True)
                peak[0] = max(peak[0], sum(q.memory_info().rss for q in tree) / 2**20)
            except psutil.Error:
                pass
            time.sleep(0.05)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, _ = p.communicate()
    th.join()
    assert p.returncode == 0, out
    print("   ", out.strip().splitlines()[0])
    return time.perf_counter() - t0, peak[0]


def main():
    ap = parser(__doc__)
    ap.add_argument("--gb", type=float, default=None, help="size of the .jsonl.zst file in GB (1; 0.05 with --quick)")
    ap.add_argument("--keep", default=None, help="make the files in DIR and keep them (made once, reused)")
    a = ap.parse_args()
    gb = a.gb or (0.05 if a.quick else 1.0)
    d = Path(a.keep) if a.keep else Path(tempfile.mkdtemp())
    d.mkdir(parents=True, exist_ok=True)
    zst, home = d / f"rows-{gb:g}gb.jsonl.zst", Path(tempfile.mkdtemp())
    try:
        if not zst.exists():
            size, expanded = make_jsonl_zst(zst, gb)
        else:
            size = zst.stat().st_size
            expanded = sum(len(c) for c in zstandard.ZstdDecompressor().read_to_iter(open(zst, "rb")))
        print(f"{zst.name}: {size / 1e6:,.0f} MB compressed, {expanded / 1e6:,.0f} MB of JSON lines; {os.cpu_count()} "
              f"cores")
        ref = reference_zst(zst)
        secs, peak = timed_add(home, "zst", zst)
        print(f"  cllm add: {expanded / 1e6 / secs:6.1f} MB/s, peak memory {peak:,.0f} MiB; reference pass "
              f"(read, expand, decode, hash): {expanded / 1e6 / ref:6.1f} MB/s; ratio {ref / secs:.2f}")
        import pyarrow as pa, pyarrow.parquet as pq
        pqf = d / f"rows-{gb:g}gb.parquet"
        if not pqf.exists():
            with pq.ParquetWriter(pqf, pa.schema([("id", pa.int64()), ("text", pa.string())])) as w:
                rows = []
                with zstandard.ZstdDecompressor().stream_reader(open(zst, "rb")) as r:
                    for line in io.TextIOWrapper(r, encoding="utf-8"):
                        o = json.loads(line)
                        rows.append(o)
                        if len(rows) == 10_000:
                            w.write_table(pa.Table.from_pylist(rows))
                            rows = []
                if rows:
                    w.write_table(pa.Table.from_pylist(rows))
        ref = reference_parquet(pqf)
        secs, peak = timed_add(home, "pq", pqf)
        print(f"{pqf.name}: {pqf.stat().st_size / 1e6:,.0f} MB (MB/s below: of the same rows as JSON lines)")
        print(f"  cllm add: {expanded / 1e6 / secs:6.1f} MB/s, peak memory {peak:,.0f} MiB; reference pass (pyarrow "
              f"reads the column, encodes, hashes): {expanded / 1e6 / ref:6.1f} MB/s; ratio {ref / secs:.2f}")
    finally:
        shutil.rmtree(home, ignore_errors=True)
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
