"Helpers shared by the benchmark scripts (not part of the package)."
import argparse, json, os, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def parser(doc: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=doc.strip().splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc
    )
    ap.add_argument("--quick", action="store_true", help="the short version that `make bench` runs")
    return ap


def corpus_text(n_chars: int) -> str:
    "Deterministic English-like text: the standard library's docstrings, repeated to `n_chars`."
    from crystalline_nb.ingest import demo_corpus
    d = Path(tempfile.mkdtemp()) / "c"
    demo_corpus(d, max_bytes=3_000_000)
    base = "\n\n".join(p.read_text() for p in sorted(d.glob("*.txt")))
    reps = n_chars // len(base) + 1
    return (base * reps)[:n_chars]


def median(xs): return statistics.median(xs)


def peak_rss_mib() -> float:
    "Peak resident memory of this process in MiB."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def files_under(paths) -> list[Path]:
    "The regular files under `paths` (files and folders), links not followed, in name order."
    out = []
    for p in map(Path, paths):
        if p.is_file() and not p.is_symlink():
            out.append(p)
        elif p.is_dir():
            out.extend(f for f in sorted(p.rglob("*")) if f.is_file() and not f.is_symlink())
    return out


def reference_pass(paths) -> tuple[int, float]:
    """The bytes under `paths` and the seconds this process takes to read them once, a MiB at a time: each file
    read (expanded when compressed, as ingestion reads it), decoded as UTF-8 (invalid bytes replaced) and hashed
    with SHA-256. The machine's own yardstick: an ingestion figure divided by it travels between machines."""
    import hashlib
    from crystalline_nb.ingest import compression_of, expanded
    t0, n = time.perf_counter(), 0
    for f in files_under(paths):
        h = hashlib.sha256()
        try:
            src = expanded(f) if compression_of(f) else open(f, "rb")
            with src:
                while chunk := src.read(1 << 20):
                    chunk.decode("utf-8", "replace")
                    h.update(chunk)
                    n += len(chunk)
        except (OSError, EOFError, ValueError):
            pass  # a damaged compressed file: ingestion refuses it too
    return n, time.perf_counter() - t0


def machine() -> str:
    "Cores and CPU model of this machine, for the figures' heading."
    import platform
    model = platform.processor() or "?"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    return f"{os.cpu_count()} cores, {model}"
