"""A training step of nanoGPT's CPU shape, side by side in one process: this tree's model and optimizer against another
revision of this package, nanoGPT's own model and optimizer, or both, one step of each in turn.

Usage: python bench/step_ab.py [--quick] [--steps N] [--against REV] [--nanogpt PATH] [--chunk K] [--threads N]

Each contender is a model of the shape (4 layers, 4 heads, width 128, MLP 512, learned positions, no biases, block 64,
batch 12, vocabulary 259) with the optimizer its trainer uses (this package: AdamW as `trainer.optimizer_for` makes
it, fused on the CPU where `device.fused_adamw` says so, and nanoGPT its `configure_optimizers`), and does the same
work a step: forward, cross-entropy, backward, gradient clipping at 1.0, the optimizer's step, zeroing the gradients,
the loss read out. All train on the same batches of the stdlib's docstrings (byte ids). Steps alternate, so every
contender meets the same moments of a machine whose speed drifts. The figures are the medians of chunks of K steps
(the machine's state shows in their level) and of the whole run, and beside them each other contender's step time over
the first's, the median of the ratios step by step (a pair of steps meets the same moment).

--against REV: the package as it was at git revision REV (`git archive`, imported under another name), its own
model and optimizer. --nanogpt PATH: a nanoGPT checkout or bare mirror (its model.py, read in a temporary folder).
What is measured is the step alone: data loading, bookkeeping and the process's memory policy (`device.steady_heap`,
which a `cllm train` run sets) are the same for all here. `bench/nanogpt.py` measures whole runs.

--threads N calls `torch.set_num_threads(N)` first. The default, 0, leaves torch's own choice, as `cllm train` (without
--threads) and nanoGPT's train.py both run. The call is not neutral: with it, in one process, nanoGPT's step measured
0.8-1.6 ms slower and ours 0.3-1.2 ms faster than without (2 threads either way), which moves their ratio by 4-5%.
"""
import importlib, importlib.util, io, statistics, subprocess, sys, tarfile, tempfile, time
from pathlib import Path
import torch
import torch.nn.functional as F
from common import parser, corpus_text, ROOT

SHAPE = dict(vocab_size=259, d_model=128, n_layer=4, n_head=4, d_ff=512, max_seq_len=64, positional="learned",
             bias=False, embedding_init="normal")
BATCH, BLOCK = 12, 64


def package_at(rev: str):
    "This package as it was at git revision `rev`, imported as its own package (no clash with the tree's)."
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "crystalline_nb"], capture_output=True)
    if tar.returncode != 0:
        raise SystemExit(f"error: no revision {rev!r} here: {tar.stderr.decode().strip()}")
    d = Path(tempfile.mkdtemp())
    tarfile.open(fileobj=io.BytesIO(tar.stdout)).extractall(d, filter="data")
    name = "crystalline_nb_" + "".join(c for c in rev if c.isalnum())
    (d / "crystalline_nb").rename(d / name)
    sys.path.insert(0, str(d))
    return name


def cllm_contender(pkg: str):
    "A model of the shape, its trainer's optimizer (from package `pkg`) and its step's forward."
    cfg_mod, model_mod = importlib.import_module(f"{pkg}.config"), importlib.import_module(f"{pkg}.model")
    trainer, device = importlib.import_module(f"{pkg}.trainer"), importlib.import_module(f"{pkg}.device")
    torch.manual_seed(0)
    m = model_mod.CLLM(cfg_mod.CLLMConfig(**SHAPE))
    s = cfg_mod.TrainSettings(batch_size=BATCH, seq_len=BLOCK, lr=1e-3, weight_decay=0.1, beta2=0.99)
    opt = trainer.optimizer_for(m, s, fused=device.fused_adamw(torch.device("cpu")))
    return m, opt, lambda x, y: F.cross_entropy(m(x).view(-1, SHAPE["vocab_size"]), y.reshape(-1))


def nanogpt_contender(path: Path):
    "nanoGPT's model of the shape (its own model.py) and the optimizer its train.py makes on the CPU."
    sys.path.insert(0, str(Path(__file__).parent))
    from nanogpt import unpack_nanogpt
    tree = unpack_nanogpt(path, Path(tempfile.mkdtemp()) / "nanogpt")
    spec = importlib.util.spec_from_file_location("nanogpt_model", tree / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    m = mod.GPT(mod.GPTConfig(block_size=BLOCK, vocab_size=SHAPE["vocab_size"], n_layer=4, n_head=4, n_embd=128,
                              dropout=0.0, bias=False))
    opt = m.configure_optimizers(0.1, 1e-3, (0.9, 0.99), "cpu")
    return m, opt, lambda x, y: m(x, y)[1]


def batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    "`n` batches of windows of the stdlib's docstrings as byte ids (the byte tokenizer's), inputs and targets."
    from crystalline_nb.tokenizer import ByteTokenizer
    ids = torch.tensor(ByteTokenizer().encode(corpus_text(400_000)), dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        ix = torch.randint(len(ids) - BLOCK - 1, (BATCH,), generator=g)
        w = torch.stack([ids[i : i + BLOCK + 1] for i in ix])
        out.append((w[:, :-1].contiguous(), w[:, 1:].contiguous()))
    return out


def step(model, opt, loss_of, x, y) -> float:
    "One training step: its seconds."
    t = time.perf_counter()
    loss = loss_of(x, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    loss.item()
    return time.perf_counter() - t


def main():
    ap = parser(__doc__)
    ap.add_argument("--steps", type=int, default=None, help="steps of each contender (default 1000, --quick 60)")
    ap.add_argument("--against", default=None, help="a git revision of this package to measure beside this tree")
    ap.add_argument("--nanogpt", default=None, help="a nanoGPT checkout (or bare mirror) to measure beside this tree")
    ap.add_argument("--chunk", type=int, default=None, help="steps a chunk (default 50, --quick 20)")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads(N) first (default 0: torch's choice)")
    a = ap.parse_args()
    if a.threads < 0:
        raise SystemExit("error: --threads must be 0 (torch's choice) or more")
    if a.threads:
        torch.set_num_threads(a.threads)
    steps, chunk = a.steps or (60 if a.quick else 1000), a.chunk or (20 if a.quick else 50)
    if steps < 10 or chunk < 5:
        raise SystemExit("error: --steps must be at least 10 and --chunk at least 5")
    who = {"this tree": cllm_contender("crystalline_nb")}
    if a.against:
        who[a.against] = cllm_contender(package_at(a.against))
    if a.nanogpt:
        if not Path(a.nanogpt).exists():
            raise SystemExit(f"error: no nanoGPT checkout at {a.nanogpt}")
        who["nanoGPT"] = nanogpt_contender(Path(a.nanogpt))
    if len(who) == 1:
        print("nothing to compare with (--against REV and/or --nanogpt PATH): this tree alone")
    data = batches(steps)
    secs = {k: [] for k in who}
    for i, (x, y) in enumerate(data):
        for k, (m, opt, loss_of) in who.items():
            secs[k].append(step(m, opt, loss_of, x, y))
    names, first = list(who), list(who)[0]

    def row(label: str, a: int, b: int) -> str:
        "ms a step (medians) and each other's step over the first's (the median of the steps' ratios: paired)."
        ms = "".join(f"{statistics.median(secs[k][a:b]) * 1e3:>14.2f}" for k in names)
        return f"{label:>11}" + ms + "".join(
            f"{statistics.median(o / t for o, t in zip(secs[k][a:b], secs[first][a:b])):>16.3f}" for k in names[1:])
    print(f"{steps} steps each, alternating, batch {BATCH} x {BLOCK}, {torch.get_num_threads()} threads, ms a step "
          f"(median of {chunk}-step chunks), x = the other's step time over {first}'s, step by step (median)")
    print(f"{'steps':>11}" + "".join(f"{k:>14}" for k in names) + "".join(f"{'x ' + k:>16}" for k in names[1:]))
    for i in range(3, steps, chunk):  # the first 3 steps warm up
        print(row(f"{i}-{min(i + chunk, steps) - 1}", i, i + chunk))
    print(row("all", 3, steps))

if __name__ == "__main__":
    main()
