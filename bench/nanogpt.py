"""cllm train against nanoGPT's own train.py on nanoGPT's README CPU configuration: speed and held-out loss.

Usage: python bench/nanogpt.py --nanogpt PATH [--quick] [--rounds N] [--iters N] [--text PATH ...]
                               [--cllm-args "OPTIONS" ...]

PATH is a nanoGPT checkout (a work tree with train.py, or a bare git mirror, read with `git archive`); nothing
of it is copied into this project: it is unpacked into a temporary folder for the run. Without PATH (or the
NANOGPT_DIR variable) the bench says so and exits 0.

The text: the files given with --text (files or folders, read as UTF-8, in sorted order), else the standard
library's docstrings (`ingest.demo_corpus`, about 880 kB of English prose written by others, the corpus of `make
demo`). The files are shuffled with a fixed seed; the last tenth of them (by bytes) is held out: neither side
trains on it. The rest goes through `cllm add` into the cllm model, and nanoGPT's train.bin is written from the
tokens cllm stored (byte ids, vocabulary 259, as this package's byte tokenizer), so both train on the same
tokens; the held-out files are cleaned by the same ingestion (a scratch model) into the tokens both are scored on.
--nanogpt-vocab corpus gives nanoGPT only the symbols the text holds, renumbered (what its char-level preparation
does; about 100 for English text) while cllm keeps its 259: the same sequence, fewer classes to tell apart.

Both train the same shape: 4 layers, 4 heads, width 128, MLP 512, learned positions, block 64, batch 12, no
biases, lr 1e-3 with 100 warm-up steps and a cosine decay to 1e-4 at the last step, weight decay 0.1, AdamW betas
(0.9, 0.99), clipping 1.0, no dropout, the same thread count, fp32 (and cllm in bf16 too, below). nanoGPT runs
its README command (train.py config/train_shakespeare_char.py --device=cpu --compile=False --block_size=64
--batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=N --lr_decay_iters=N --dropout=0.0) and saves its
model after N iterations. Its seed is varied a round (its `torch.manual_seed` offset by the round, its code
unchanged). cllm runs `cllm new` and `cllm train` with the same settings and `--seed` the round, its target set so
that the schedule ends at step N. The runs of a round are time-sliced (--slice, 2 s): all started, each let run in turn
while the others are paused, so that all meet the same moments of a shared machine (its speed drifts by 20% over
minutes here, which one run after the other turned into ratios from x0.8 to x1.1); who goes first alternates.
--cllm-args takes sets of `cllm train` options, each a cllm run of its own in every round: `--cllm-args "" "--precision
bf16"` (the default where the CPU has bf16 units, AVX512_BF16 or AMX, else `""` alone) runs cllm as it is
(fp32 on the CPU) and cllm in bf16 beside nanoGPT (fp32: its train.py runs no autocast on the CPU), all time-sliced.

Figures: tokens/s, the median over the iterations of each run (nanoGPT's per-iteration times from its log,
cllm's from its history), and the held-out loss: each model, loaded from what its run saved (nanoGPT's own
`model.py` for its checkpoint), scores the same non-overlapping windows of 64 tokens of the held-out text
(mean cross-entropy in nats a byte). The speed ratio is the median of the rounds' ratios.
"""

import importlib.util, io, os, pickle, random, re, signal, statistics, subprocess, sys, tarfile, tempfile
from pathlib import Path
import numpy as np
from common import parser, BIN

SHAPE = dict(layers=4, heads=4, d_model=128, d_ff=512, block=64, batch=12)


def text_files(paths: list[str]) -> list[bytes]:
    "The UTF-8 files under `paths` (sorted), else the standard library's docstrings."
    if not paths:
        from crystalline_nb.ingest import demo_corpus
        d = Path(tempfile.mkdtemp()) / "docstrings"
        demo_corpus(d, max_bytes=10**9)
        paths = [str(d)]
    out = []
    for p in map(Path, paths):
        for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
            if f.is_file():
                try:
                    out.append(f.read_bytes().decode().encode())
                except UnicodeDecodeError:
                    pass
    if len(out) < 2:
        raise SystemExit("error: the text needs two UTF-8 files or more (one tenth of them is held out)")
    return out


def split_text(files: list[bytes]) -> tuple[bytes, bytes]:
    "The files shuffled (seed 0) and joined: the first nine tenths by bytes to train on, the rest held out."
    files = files[:]
    random.Random(0).shuffle(files)
    total, acc, cut = sum(map(len, files)), 0, len(files) - 1
    for i, f in enumerate(files):
        acc += len(f)
        if acc >= 0.9 * total:
            cut = max(1, min(i + 1, len(files) - 1))
            break
    return b"\n\n".join(files[:cut]), b"\n\n".join(files[cut:])


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


# runs nanoGPT's train.py as its own command line does, with torch.manual_seed offset by argv[1]
SEEDED = "\n".join(["import runpy, sys, torch", "off = int(sys.argv.pop(1))", "seed = torch.manual_seed",
                    "torch.manual_seed = lambda s: seed(s + off)", "runpy.run_path('train.py', run_name='__main__')"])


def nanogpt_job(tree: Path, data: str, iters: int, out: Path, seed: int):
    "nanoGPT's README CPU command on dataset `data`, and what to make of its output (see `run_jobs`)."
    s = SHAPE
    cmd = [sys.executable, "-c", SEEDED, str(seed), "config/train_shakespeare_char.py", "--device=cpu",
           "--compile=False", "--eval_iters=20", "--log_interval=1", f"--block_size={s['block']}",
           f"--batch_size={s['batch']}", f"--n_layer={s['layers']}", f"--n_head={s['heads']}",
           f"--n_embd={s['d_model']}", f"--max_iters={iters}", f"--lr_decay_iters={iters}", "--dropout=0.0",
           f"--dataset={data}", f"--out_dir={out}", f"--eval_interval={iters}", "--always_save_checkpoint=True"]

    def finish(stdout: str) -> dict:
        "Median tokens/s (per-iteration times from its log), last-50 train loss and the saved model."
        rows = [(int(m[1]), float(m[2]), float(m[3])) for m in
                re.finditer(r"iter (\d+): loss ([\d.]+), time ([\d.]+)ms", stdout)]
        dts = [dt for i, _, dt in rows if 0 < i < iters]  # not the first step, nor the one after the evaluation
        return dict(tokens_per_s=s["batch"] * s["block"] / (statistics.median(dts) / 1000),
                    loss=float(np.mean([l for _, l, _ in rows[-50:]])), model=nanogpt_model(tree, out / "ckpt.pt"))
    return dict(cmd=cmd, cwd=tree, env=None, finish=finish, name="nanoGPT")


def nanogpt_model(tree: Path, ckpt: Path):
    "nanoGPT's model saved in `ckpt`, built by its own model.py."
    import torch
    spec = importlib.util.spec_from_file_location("nanogpt_model", tree / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = torch.load(ckpt, map_location="cpu", weights_only=False)
    m = mod.GPT(mod.GPTConfig(**c["model_args"]))
    m.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in c["model"].items()})
    assert c["iter_num"] > 0
    return m.eval()


def cllm_cmd(home: Path):
    env = {**os.environ, "CLLM_HOME": str(home)}

    def run(*a):
        r = subprocess.run([str(BIN / "cllm"), *map(str, a)], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"error: cllm {a[0]} failed: {r.stderr[-1500:]}")
        return r
    return run


def cllm_job(home: Path, name: str, train_file: Path, iters: int, seed: int, extra: list[str], label: str = "cllm"):
    "A fresh cllm model of nanoGPT's shape with the text in its queue; its `cllm train` command (see `run_jobs`)."
    from crystalline_nb.workspace import Workspace
    from crystalline_nb.history import history
    from crystalline_nb.epochs import EpochPlan
    s, cllm = SHAPE, cllm_cmd(home)
    cllm("new", name, "--preset", "micro", "--d-model", s["d_model"], "--layers", s["layers"], "--heads",
         s["heads"], "--d-ff", s["d_ff"], "--max-seq-len", s["block"], "--positional", "learned", "--no-bias",
         "--seed", seed)
    cllm("add", name, train_file)
    ws = Workspace(home)
    n = EpochPlan(ws.queue(name).rows()[0]["tokens"], s["block"], 0, 0, 0).n_train  # training positions an epoch
    target = iters * s["batch"] * s["block"] / n  # the cosine schedule ends at step `iters`, as nanoGPT's does
    cmd = [str(BIN / "cllm"), "train", name, "--epochs", repr(target), "--batch-size", s["batch"], "--seq-len",
           s["block"], "--lr", "1e-3", "--warmup", "100", "--min-lr-ratio", "0.1", "--weight-decay", "0.1", "--beta2",
           "0.99", "--grad-clip", "1.0", "--max-steps", iters, "--save-every", 10**6, "--seed", seed, *extra]

    def finish(stdout: str) -> dict:
        "Median tokens/s (per-step rates from its history), last-50 train loss and the saved model."
        h = history(ws, name)
        return dict(tokens_per_s=float(np.median(h.tokens_per_s.values[1:])),
                    loss=float(np.mean(h.loss.values[-50:])), model=ws.load(name).model.eval())
    return dict(cmd=list(map(str, cmd)), cwd=None, env={**os.environ, "CLLM_HOME": str(home)}, finish=finish,
                name=label)


def run_jobs(jobs: list[dict], slice_s: float) -> dict:
    """Run the training commands of `jobs`, each result by its name. With `slice_s` > 0 they run time-sliced: all
    started, each in turn let run for `slice_s` seconds while the others are stopped (SIGSTOP), so that every one
    meets the same moments of a shared machine whose speed drifts over minutes; the few steps cut by a pause are
    outliers that the medians leave out. With 0, one after the other."""
    out = {}
    if slice_s <= 0:
        for j in jobs:
            r = subprocess.run(j["cmd"], cwd=j["cwd"], env=j["env"], capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"error: {j['name']} failed: {r.stderr[-1500:]}")
            out[j["name"]] = j["finish"](r.stdout)
        return out
    procs = []
    for j in jobs:
        log = tempfile.TemporaryFile("w+")
        procs.append((j, log, subprocess.Popen(j["cmd"], cwd=j["cwd"], env=j["env"], stdout=log,
                                               stderr=subprocess.STDOUT, text=True, start_new_session=True)))
        os.killpg(procs[-1][2].pid, signal.SIGSTOP)
    turn = 0
    while any(p.poll() is None for _, _, p in procs):
        live = [p for _, _, p in procs if p.poll() is None]
        p = live[turn % len(live)]
        os.killpg(p.pid, signal.SIGCONT)
        try:
            p.wait(timeout=slice_s)
        except subprocess.TimeoutExpired:
            if len(live) > 1:
                os.killpg(p.pid, signal.SIGSTOP)
        turn += 1
    for j, log, p in procs:
        log.seek(0)
        text = log.read()
        if p.returncode != 0:
            raise SystemExit(f"error: {j['name']} failed: {text[-1500:]}")
        out[j["name"]] = j["finish"](text)
    return out


def stored_tokens(home: Path, name: str) -> np.ndarray:
    "Every token of model `name`'s queue, in order."
    from crystalline_nb.workspace import Workspace
    from crystalline_nb.epochs import Corpus
    c = Corpus(Workspace(home).queue(name))
    try:
        return c.read(0, len(c))
    finally:
        c.close()


def heldout_loss(model, ids: np.ndarray, block: int, cllm: bool) -> float:
    "Mean cross-entropy of `model` over the non-overlapping windows of `block` tokens of `ids` (full ones only)."
    import torch
    import torch.nn.functional as F
    n = (len(ids) - 1) // block
    x = torch.from_numpy(ids[: n * block].astype(np.int64)).view(n, block)
    y = torch.from_numpy(ids[1 : n * block + 1].astype(np.int64)).view(n, block)
    total = 0.0
    with torch.no_grad():
        for i in range(0, n, 64):
            xb, yb = x[i : i + 64], y[i : i + 64]
            logits = model(xb) if cllm else model(xb, yb)[0]
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="sum").item()
    return total / (n * block)


def main():
    ap = parser(__doc__)
    ap.add_argument("--nanogpt", default=os.environ.get("NANOGPT_DIR"), help="path of a nanoGPT checkout")
    ap.add_argument("--rounds", type=int, default=None, help="alternating rounds, a seed each (default 3; --quick 1)")
    ap.add_argument("--iters", type=int, default=None, help="iterations a run (default 2000; --quick 300)")
    ap.add_argument("--text", nargs="+", default=[], help="files or folders of text (default: the stdlib's docstrings)")
    ap.add_argument("--nanogpt-vocab", choices=("bytes", "corpus"), default="bytes",
                    help="nanoGPT's vocabulary: the byte ids cllm uses (259), or only the symbols the text holds, "
                         "renumbered, as nanoGPT's own char-level data preparation makes it")
    ap.add_argument("--slice", type=float, default=2.0,
                    help="seconds each run goes on while the other is paused (0: one run after the other)")
    ap.add_argument("--cllm-args", nargs="+", default=None,
                    help="more `cllm train` options, quoted, each set given a cllm run of its own in every round "
                         "(default: cllm as it is, and with --precision bf16 where the CPU has bf16 units)")
    a = ap.parse_args()
    if not a.nanogpt or not Path(a.nanogpt).exists():
        print("no nanoGPT checkout given (--nanogpt PATH or NANOGPT_DIR): nothing measured")
        return
    import torch
    rounds, iters = a.rounds or (1 if a.quick else 3), a.iters or (300 if a.quick else 2000)
    tmp = Path(tempfile.mkdtemp())
    tree = unpack_nanogpt(Path(a.nanogpt), tmp / "nanogpt")
    train, held = split_text(text_files(a.text))
    home = tmp / "home"
    (tmp / "train.txt").write_bytes(train)
    (tmp / "heldout.txt").write_bytes(held)
    cllm = cllm_cmd(home)
    cllm("new", "reader", "--preset", "micro")
    cllm("add", "reader", tmp / "train.txt")
    ids = stored_tokens(home, "reader")
    cllm("new", "heldout", "--preset", "micro")
    cllm("add", "heldout", tmp / "heldout.txt")
    val = stored_tokens(home, "heldout")
    d = tree / "data" / "bench"
    d.mkdir(parents=True)
    n_val, vocab, renumber = val, 259, np.arange(259)
    if a.nanogpt_vocab == "corpus":  # the same sequence, each symbol renumbered among those the text holds
        used = np.unique(np.concatenate([ids, val]))
        vocab, renumber = len(used), np.zeros(259, np.int64)
        renumber[used] = np.arange(len(used))
        n_val = renumber[val]
    renumber[ids].astype(np.uint16).tofile(d / "train.bin")
    n_val.astype(np.uint16).tofile(d / "val.bin")
    (d / "meta.pkl").write_bytes(pickle.dumps(dict(vocab_size=vocab)))
    epochs = iters * SHAPE["batch"] * SHAPE["block"] / len(ids)
    print(f"{len(ids):,} tokens to train on ({epochs:.2f} epochs in {iters} iterations), {len(val):,} held out; "
          f"{rounds} round(s); {torch.get_num_threads()} threads; nanoGPT's vocabulary {vocab}")
    from crystalline_nb.device import cpu_bf16_units
    given = a.cllm_args if a.cllm_args is not None else ["", "--precision bf16"] if cpu_bf16_units() else [""]
    variants = {(f"cllm {' '.join(v.split())}" if v.split() else "cllm"): v.split() for v in given}
    res = {k: [] for k in ("nanoGPT", *variants)}
    for r in range(rounds):
        jobs = [nanogpt_job(tree, "bench", iters, tmp / f"out{r}", r)]
        jobs += [cllm_job(home, f"m{r}-{i}", tmp / "train.txt", iters, r, extra, label)
                 for i, (label, extra) in enumerate(variants.items())]
        got = run_jobs(jobs if r % 2 == 0 else jobs[::-1], a.slice)  # who goes first alternates
        for who, x in got.items():
            scored = n_val if who == "nanoGPT" else val
            x["heldout"] = heldout_loss(x.pop("model"), scored, SHAPE["block"], who != "nanoGPT")
            res[who].append(x)
        n = res["nanoGPT"][-1]
        print(f"round {r + 1} (seed {r}): nanoGPT {n['tokens_per_s']:,.0f} tok/s, held-out {n['heldout']:.4f}, "
              f"train loss {n['loss']:.3f}", flush=True)
        for who in variants:
            c = res[who][-1]
            print(f"  {who}: {c['tokens_per_s']:,.0f} tok/s (x{c['tokens_per_s'] / n['tokens_per_s']:.3f}), held-out "
                  f"{c['heldout']:.4f} ({c['heldout'] - n['heldout']:+.4f}), train loss {c['loss']:.3f}", flush=True)
    hn = statistics.mean(x["heldout"] for x in res["nanoGPT"])
    for who in variants:
        ratios = [c["tokens_per_s"] / n["tokens_per_s"] for n, c in zip(res["nanoGPT"], res[who])]
        hc = statistics.mean(x["heldout"] for x in res[who])
        print(f"{who}: x{statistics.median(ratios):.3f} of nanoGPT's tokens/s (median of {rounds}, rounds "
              f"{', '.join(f'x{r:.3f}' for r in ratios)}), held-out loss, mean of {rounds} seed(s): nanoGPT "
              f"{hn:.4f}, {who} {hc:.4f} ({hc - hn:+.4f})")


if __name__ == "__main__":
    main()
