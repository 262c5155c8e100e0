"""cllm train against nanoGPT's own train.py on nanoGPT's README CPU configuration, side by side on the same text.

Usage: python bench/nanogpt.py --nanogpt PATH [--quick] [--rounds N] [--iters N]

PATH is a nanoGPT checkout (a work tree with train.py, or a bare git mirror, read with `git archive`); nothing
of it is copied into this project: it is unpacked into a temporary folder for the run. Without PATH (or the
NANOGPT_DIR variable) the bench says so and exits 0.

Both train the same shape on the same bytes (about 4 MB of ASCII licence texts from /usr/share/common-licenses,
repeated, as cllm's ingestion cleans them: nanoGPT's train.bin is written from that cleaned text; ids = byte + 3,
vocabulary 259, as this package's byte tokenizer): 4 layers, 4 heads, width 128, MLP 512,
learned positions, block 64, batch 12, lr 1e-3 with 100 warm-up steps and a cosine decay to 1e-4 at step 2000,
weight decay 0.1, AdamW betas (0.9, 0.99) (nanoGPT's config for this example), clipping 1.0, no dropout, fp32 on
the CPU with the same thread count. nanoGPT runs its README
command (train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20 --log_interval=1
--block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000
--dropout=0.0) on that data; cllm runs `cllm train` with a target set so that its schedule ends at the same step.
cllm runs twice per round, without and with biases in its linear layers and LayerNorms (nanoGPT's README
configuration has none), which decides the package's default. Runs alternate (nanoGPT, cllm, cllm, nanoGPT, ...).
tokens/s is the median over iterations of each run (nanoGPT's
per-iteration times from its log, cllm's from its history); the loss is the mean train loss of the last 50
iterations.
"""

import argparse, io, os, re, statistics, subprocess, sys, tarfile, tempfile
from pathlib import Path
import numpy as np
from common import parser, BIN

LICENCES = Path("/usr/share/common-licenses")


def corpus(n_bytes: int) -> bytes:
    "ASCII licence texts, repeated to `n_bytes`."
    parts = []
    for p in sorted(LICENCES.iterdir()) if LICENCES.is_dir() else []:
        if p.is_file():
            b = p.read_bytes()
            if all(c < 128 for c in b):
                parts.append(b)
    if not parts:
        raise SystemExit("error: no ASCII licence texts in /usr/share/common-licenses")
    base = b"\n\n".join(parts)
    return (base * (n_bytes // len(base) + 1))[:n_bytes]


def unpack_nanogpt(src: Path, dest: Path) -> Path:
    "A work tree of the nanoGPT checkout at `src` in `dest` (copied, or extracted from a bare mirror)."
    if (src / "train.py").exists():
        subprocess.run(["cp", "-r", f"{src}/.", str(dest)], check=True)
    else:
        tar = subprocess.run(["git", f"--git-dir={src}", "archive", "HEAD"], capture_output=True, check=True).stdout
        tarfile.open(fileobj=io.BytesIO(tar)).extractall(dest)
    if not (dest / "train.py").exists():
        raise SystemExit(f"error: {src} is not a nanoGPT checkout (no train.py)")
    return dest


def run_nanogpt(tree: Path, data: str, iters: int, out: Path) -> dict:
    "nanoGPT's README CPU command on dataset `data`; its median tokens/s and final loss, from its log."
    cmd = [sys.executable, "train.py", "config/train_shakespeare_char.py", "--device=cpu", "--compile=False",
           "--eval_iters=20", "--log_interval=1", "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4",
           "--n_embd=128", f"--max_iters={iters}", f"--lr_decay_iters={iters}", "--dropout=0.0", f"--dataset={data}",
           f"--out_dir={out}"]
    r = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"error: nanoGPT failed: {r.stderr[-1500:]}")
    rows = [(int(m[1]), float(m[2]), float(m[3])) for m in
            re.finditer(r"iter (\d+): loss ([\d.]+), time ([\d.]+)ms", r.stdout)]
    dts = [dt for i, _, dt in rows if i > 0]
    return dict(
        tokens_per_s=12 * 64 / (statistics.median(dts) / 1000), loss=float(np.mean([l for _, l, _ in rows[-50:]]))
    )


def run_cllm(home: Path, name: str, text: bytes, iters: int, bias: bool, schedule: str | None = None) -> dict:
    "Train a fresh cllm model of nanoGPT's shape through `cllm train`; its median tokens/s and final loss."
    env = {**os.environ, "CLLM_HOME": str(home)}
    cllm = lambda *a: subprocess.run([str(BIN / "cllm"), *a], env=env, capture_output=True, text=True)
    r = cllm("new", name, "--preset", "micro", "--d-model", "128", "--layers", "4", "--heads", "4", "--d-ff", "512",
             "--max-seq-len", "64", "--positional", "learned", "--bias" if bias else "--no-bias")
    assert r.returncode == 0, r.stderr
    f = home / f"{name}.txt"
    f.write_bytes(text)
    assert cllm("add", name, str(f)).returncode == 0
    from crystalline_nb.workspace import Workspace
    from crystalline_nb.history import history
    from crystalline_nb.epochs import EpochPlan
    ws = Workspace(home)
    n = EpochPlan(ws.queue(name).rows()[0]["tokens"], 64, 0, 0, 0).n_train  # training positions of an epoch
    target = iters * 12 * 64 / n  # the cosine schedule ends at step `iters`, as nanoGPT's does
    r = cllm(
        "train",
        name,
        "--epochs",
        repr(target),
        "--batch-size",
        "12",
        "--seq-len",
        "64",
        "--lr",
        "1e-3",
        "--warmup",
        "100",
        "--min-lr-ratio",
        "0.1",
        "--weight-decay",
        "0.1",
        "--beta2",
        "0.99",
        "--grad-clip",
        "1.0",
        "--max-steps",
        str(iters),
        "--save-every",
        str(10**6),
        *(["--schedule", schedule] if schedule else []),
    )
    assert r.returncode == 0, r.stderr
    h = history(ws, name)
    return dict(tokens_per_s=float(np.median(h.tokens_per_s.values[1:])), loss=float(np.mean(h.loss.values[-50:])))


def main():
    ap = parser(__doc__)
    ap.add_argument("--nanogpt", default=os.environ.get("NANOGPT_DIR"), help="path of a nanoGPT checkout")
    ap.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 3; --quick 1)")
    ap.add_argument("--iters", type=int, default=None, help="iterations per run (default 2000; --quick 300)")
    ap.add_argument("--variants", default="no-bias,bias",
                    help="cllm variants to run: no-bias, bias, each optionally with :SCHEDULE (no-bias:cosine)")
    a = ap.parse_args()
    if not a.nanogpt or not Path(a.nanogpt).exists():
        print("no nanoGPT checkout given (--nanogpt PATH or NANOGPT_DIR): nothing measured")
        return
    rounds, iters = a.rounds or (1 if a.quick else 3), a.iters or (300 if a.quick else 2000)
    tmp = Path(tempfile.mkdtemp())
    tree = unpack_nanogpt(Path(a.nanogpt), tmp / "nanogpt")
    text = corpus(4_000_000)
    from crystalline_nb.ingest import clean_text
    cleaned = clean_text(text.decode()).encode()  # what cllm trains on after ingestion: nanoGPT gets the same bytes
    ids = np.frombuffer(cleaned, dtype=np.uint8).astype(np.uint16) + 3
    d = tree / "data" / "licences"
    d.mkdir(parents=True)
    cut = int(len(ids) * 0.9)
    ids[:cut].tofile(d / "train.bin")
    ids[cut:].tofile(d / "val.bin")
    import pickle
    (d / "meta.pkl").write_bytes(pickle.dumps(dict(vocab_size=259)))
    print(f"{len(text) / 1e6:.1f} MB of ASCII licence text; {iters} iterations per run; {rounds} round(s); "
          f"{__import__('torch').get_num_threads()} threads")
    variants = {v: f"cllm, {v.replace('-', ' ')}" for v in a.variants.split(",")
                if v.split(":")[0] in ("no-bias", "bias")}
    res = {"nanoGPT": [], **{label: [] for label in variants.values()}}
    for r in range(rounds):
        res["nanoGPT"].append(run_nanogpt(tree, "licences", iters, tmp / f"out{r}"))
        for v, label in variants.items():
            kind, _, schedule = v.partition(":")
            res[label].append(run_cllm(tmp / "home", f"{kind}{r}{schedule}", text, iters, kind == "bias",
                                       schedule or None))
        base = res["nanoGPT"][-1]["tokens_per_s"]
        print(
            f"round {r + 1}: "
            + "; ".join(
                f"{k} {v[-1]['tokens_per_s']:,.0f} tok/s (x{v[-1]['tokens_per_s'] / base:.2f}, "
                f"loss {v[-1]['loss']:.3f})"
                for k, v in res.items()
            )
        )
    base = statistics.median(x["tokens_per_s"] for x in res["nanoGPT"])
    for k, v in res.items():
        tps = statistics.median(x["tokens_per_s"] for x in v)
        print(f"{k:<16} median {tps:>8,.0f} tok/s  x{tps / base:.2f} of nanoGPT  last-50 train loss "
              f"{statistics.mean(x['loss'] for x in v):.3f}")


if __name__ == "__main__":
    main()
