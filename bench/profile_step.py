"""Where a training step's time goes: the PyTorch profiler over `Trainer` steps of nanoGPT's CPU configuration.

Usage: python bench/profile_step.py [--quick] [--steps N]
A model of nanoGPT's README CPU shape (4 layers, 4 heads, width 128, MLP 512, learned positions, no biases, block
64, batch 12) trains through the same `Trainer` as `cllm train`; after a few warm-up steps, N steps run under
torch.profiler. The operators are grouped into what they do (matrix products, attention, the optimizer, ...) and
printed as shares of the operators' CPU time, with the top operators.
"""
import collections, tempfile, time
import torch
from torch.profiler import profile, ProfilerActivity
from common import parser, corpus_text
from crystalline_nb.workspace import Workspace
from crystalline_nb.trainer import Trainer

GROUPS = [  # (group, substrings of operator names), first match wins
    ("matrix products (forward and backward)", ("addmm", "aten::mm", "bmm", "matmul", "linear")),
    ("attention (scaled dot product, forward and backward)", ("scaled_dot_product", "flash_attention", "_efficient")),
    ("AdamW (foreach)", ("_foreach", "adam")),
    ("cross-entropy and log-softmax", ("cross_entropy", "log_softmax", "nll_loss")),
    ("LayerNorm", ("layer_norm",)),
    ("GELU", ("gelu",)),
    ("embeddings", ("embedding", "index_select", "index_add")),
    ("gradient clipping (norms)", ("norm", "clamp", "_foreach_mul")),
    ("element-wise adds, copies and reshapes", ("add", "copy_", "mul", "view", "reshape", "transpose", "contiguous",
                                                "as_strided", "permute", "expand", "slice", "select", "cat", "stack",
                                                "zero", "fill", "empty", "t", "sum", "to", "clone", "detach")),
]


def group_of(name: str) -> str:
    for g, keys in GROUPS:
        if any(k in name for k in keys):
            return g
    return "other operators"


def main():
    ap = parser(__doc__)
    ap.add_argument("--steps", type=int, default=None, help="profiled steps (default 40; --quick 15)")
    a = ap.parse_args()
    steps = a.steps or (15 if a.quick else 40)
    ws = Workspace(tempfile.mkdtemp())
    ws.create("p", preset_name="micro", d_model=128, n_layer=4, n_head=4, d_ff=512, max_seq_len=64,
              positional="learned", bias=False)
    ws.queue("p").add_text(corpus_text(1_500_000), source="text", near_duplicates=False)
    kw = dict(target_epochs=100, batch_size=12, seq_len=64, lr=1e-3, threads=torch.get_num_threads(),
              save_every=10**9, save_seconds=1e9)
    Trainer(ws, "p", **kw).run(max_steps=5)  # warm-up: allocations, first-step costs
    tr = Trainer(ws, "p", **kw)
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        s = tr.run(max_steps=steps)
    wall = time.perf_counter() - t0
    ev = [e for e in prof.key_averages() if e.key.startswith("aten::") or e.key.startswith("_")]
    total = sum(e.self_cpu_time_total for e in ev)
    by = collections.Counter()
    for e in ev:
        by[group_of(e.key)] += e.self_cpu_time_total
    per_step = wall / steps * 1000
    print(f"{steps} profiled steps of batch 12 x 64, {torch.get_num_threads()} threads: {per_step:.1f} ms a step "
          f"under the profiler ({s['tokens'] / s['seconds']:,.0f} tokens/s)\n")
    print(f"{'where the operators spend their time':<58}{'share':>8}")
    for g, t in by.most_common():
        print(f"{g:<58}{t / total:>8.1%}")
    top = sorted(ev, key=lambda e: -e.self_cpu_time_total)[:12]
    print(f"\n{'top operators':<58}{'share':>8}{'calls/step':>12}{'us/call':>10}")
    for e in top:
        print(f"{e.key:<58}{e.self_cpu_time_total / total:>8.1%}{e.count / steps:>12.0f}"
              f"{e.self_cpu_time_total / max(e.count, 1):>10.1f}")
    print(f"\nCPU time in operators per step: {total / steps / 1000:.1f} ms; wall {per_step:.1f} ms")


if __name__ == "__main__":
    main()
