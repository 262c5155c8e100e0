"""Training throughput: the package's Trainer against a plain hand-written PyTorch loop, side by side.

Usage: python bench/train_throughput.py [--quick] [--variants]
Both train the same model (micro preset, and nanoGPT's small CPU configuration: 4 layers, 4 heads,
width 128, block 64, batch 12) on the same tokens with the same batch, sequence length, optimizer
settings and thread count. Runs alternate (trainer, plain, trainer, plain, ...) so that noise from the
shared machine hits both alike; the figure is the median tokens/s over the timed steps of each run.
MFU is measured against a float32 matmul peak measured in the same run. Target: ratio >= 1.0.
--variants also measures CPU options for the plain loop: 1 vs 2 threads, fused AdamW, bf16 autocast,
and torch.compile (slow to warm up).
"""
import math, tempfile, time
import numpy as np
import torch
from common import parser, corpus_text, median
from crystalline_nb.workspace import Workspace
from crystalline_nb.trainer import Trainer, matmul_peak, optimizer_for, TrainSettings, lr_at
from crystalline_nb.model import CLLM
from crystalline_nb.config import flops_per_token


def trainer_run(ws, name, steps, B, T, threads):
    times = []
    tr = Trainer(
        ws,
        name,
        target_epochs=10**6,
        batch_size=B,
        seq_len=T,
        lr=1e-3,
        warmup=10,
        threads=threads,
        save_every=10**9,
        save_seconds=1e9,
    )
    tr.subscribe(lambda e: times.append(e["time"]) if e["type"] == "step" else None)
    s = tr.run(max_steps=steps)
    dt = np.diff(times)[2:]                      # per-step wall time, everything included, first steps excluded
    return B * T / np.median(dt)


def plain_run(ws, name, steps, B, T, threads, fused=False, bf16=False, compile=False):
    "The loop a researcher would write by hand: random windows, forward, backward, clip, AdamW."
    torch.set_num_threads(threads)
    lm = ws.load(name)
    m = lm.model
    m.train()
    s = TrainSettings(batch_size=B, seq_len=T, lr=1e-3, warmup=10)
    opt = torch.optim.AdamW(
        [
            dict(params=[p for p in m.parameters() if p.dim() >= 2], weight_decay=0.1),
            dict(params=[p for p in m.parameters() if p.dim() < 2], weight_decay=0.0),
        ],
        lr=1e-3,
        betas=(0.9, 0.95),
        fused=fused,
    )
    f = torch.compile(m) if compile else m
    data = torch.from_numpy(ws.queue(name).corpus().read(0, len(ws.queue(name).corpus())))
    g = torch.Generator().manual_seed(0)
    times = [time.perf_counter()]
    for step in range(steps + (5 if compile else 0)):
        ix = torch.randint(0, len(data) - T - 1, (B,), generator=g)
        x = torch.stack([data[i:i + T] for i in ix])
        y = torch.stack([data[i + 1:i + T + 1] for i in ix])
        for gr in opt.param_groups:
            gr["lr"] = lr_at(s, step, 0.0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            _, loss = f(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        loss.item()
        times.append(time.perf_counter())
    dt = np.diff(times)[3 + (5 if compile else 0):]
    return B * T / np.median(dt)


def main():
    ap = parser(__doc__)
    ap.add_argument("--variants", action="store_true", help="also measure threads / fused AdamW / bf16 / torch.compile")
    a = ap.parse_args()
    steps, rounds = (30, 2) if a.quick else (80, 3)
    threads = torch.get_num_threads()
    ws = Workspace(tempfile.mkdtemp())
    text = corpus_text(600_000)
    configs = {
        "micro (d128, 4 layers, batch 16 x 128)": dict(preset_name="micro", B=16, T=128),
        "nanoGPT CPU (d128, 4 layers, 4 heads, batch 12 x 64)": dict(
            preset_name="micro", B=12, T=64, n_head=4, d_model=128, n_layer=4, d_ff=512
        ),
    }
    torch.set_num_threads(threads)
    peak = matmul_peak()
    print(f"machine: {threads} torch threads, float32 matmul peak {peak / 1e9:.1f} GFLOP/s (measured now)\n")
    for label, c in configs.items():
        c = dict(c)
        B, T = c.pop("B"), c.pop("T")
        for n in ("t", "p"):
            ws.create(f"{n}{B}", **c, target_epochs=10**6)
            ws.queue(f"{n}{B}").add_text(text, source="corpus")
        cfg = ws.load(f"t{B}").model.cfg
        fpt = flops_per_token(cfg, T)
        res = {"trainer": [], "plain": []}
        trainer_run(ws, f"t{B}", 5, B, T, threads)                       # warm-up, not counted
        for r in range(rounds):
            res["trainer"].append(trainer_run(ws, f"t{B}", steps, B, T, threads))
            res["plain"].append(plain_run(ws, f"p{B}", steps, B, T, threads))
        t, p = median(res["trainer"]), median(res["plain"])
        print(f"{label}: {cfg.n_layer} layers, {ws.load(f't{B}').model.n_params:,} parameters")
        print(f"  plain PyTorch loop  {p:>9,.0f} tokens/s   MFU {p * fpt / peak:6.1%}")
        print(f"  crystalline Trainer {t:>9,.0f} tokens/s   MFU {t * fpt / peak:6.1%}")
        print(f"  ratio Trainer/plain {t / p:.3f}   (target >= 1.0; {rounds} alternating rounds of {steps} steps)\n")
        if a.variants and B == 16:
            print("  CPU options, plain loop, same model (alternating, median of 2):")
            opts = {
                "default (2 threads)": {},
                "1 thread": dict(threads=1),
                "fused AdamW": dict(fused=True),
                "bf16 autocast": dict(bf16=True),
            }
            if not a.quick:
                opts["torch.compile"] = dict(compile=True)
            out = {k: [] for k in opts}
            for r in range(2):
                for k, kw in opts.items():
                    kw = dict(kw)
                    th = kw.pop("threads", threads)
                    out[k].append(plain_run(ws, f"p{B}", steps, B, T, th, **kw))
            base = median(out["default (2 threads)"])
            for k, v in out.items():
                print(f"    {k:<20} {median(v):>9,.0f} tokens/s   x{median(v) / base:.2f}")
            torch.set_num_threads(threads)
            print()


if __name__ == "__main__":
    main()
