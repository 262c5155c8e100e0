"""Ingestion speed (MB/s) for the byte and BPE tokenizers, against the tokenizer alone on the same text.

Usage: python bench/ingest_speed.py [--quick]
The same text is ingested from 100 files through `Queue.add_paths` (read, decode, clean, hash, tokenize,
write shards, manifest) and, separately, tokenized alone in memory by one `encode` call per file (for BPE: the
tokenizer's single-threaded encoder). ingest / alone > 1 means the whole ingestion path beats the tokenizer alone
(BPE ingestion encodes long texts in pieces, and short files together, on every core). --quick: 4 MB in files of
40 kB (encoded together); the full run: 20 MB in files of 200 kB (each cut into pieces).
"""
import tempfile, time
from pathlib import Path
from common import parser, corpus_text
from crystalline_nb.workspace import Workspace


def main():
    a = parser(__doc__).parse_args()
    mb = 4 if a.quick else 20
    text = corpus_text(mb * 1_000_000)
    d = Path(tempfile.mkdtemp()) / "files"
    d.mkdir()
    n = 100
    k = len(text) // n
    for i in range(n):
        (d / f"f{i:03d}.txt").write_text(f"file {i}\n" + text[i * k:(i + 1) * k])
    size = sum(p.stat().st_size for p in d.iterdir()) / 1e6
    ws = Workspace(tempfile.mkdtemp())
    ws.create("byte", preset_name="nano")
    ws.create("bpe", preset_name="nano", tokenizer="bpe", texts=[text[:2_000_000]], vocab_size=4096)
    print(f"{size:.1f} MB of text in {n} files\n")
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


if __name__ == "__main__":
    main()
