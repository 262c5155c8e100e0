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
