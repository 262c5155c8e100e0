"""Throughput of 1 process against 2 processes (torchrun + DDP, gloo) on this machine, and the largest loss
difference between the two for the same global batch.

Usage: python bench/ddp_throughput.py [--quick]
Same model (micro preset), same global batch (16 x 128 tokens), same number of steps; 1 process uses 2 threads,
2 processes use 1 thread each. Alternating rounds; median of per-step tokens/s from the models' histories.
"""
import tempfile
import numpy as np
from common import parser, corpus_text, median
from crystalline_nb.workspace import Workspace
from crystalline_nb.trainer import Trainer
from crystalline_nb.distributed import run_distributed
from crystalline_nb.history import history


def main():
    a = parser(__doc__).parse_args()
    steps, rounds = (30, 1) if a.quick else (80, 3)
    ws = Workspace(tempfile.mkdtemp())
    text = corpus_text(800_000)
    res = {1: [], 2: []}
    diffs = []
    for r in range(rounds):
        for n in (1, 2):
            name = f"p{n}r{r}"
            ws.create(name, preset_name="micro", target_epochs=100)
            ws.queue(name).add_text(text, source="c")
            if n == 1:
                Trainer(ws, name, batch_size=16, seq_len=128, threads=2, save_every=10**9).run(max_steps=steps)
            else:
                p = run_distributed(
                    ws.home,
                    name,
                    2,
                    capture=True,
                    run={"max_steps": steps},
                    batch_size=8,
                    seq_len=128,
                    threads=1,
                    save_every=10**9,
                )
                assert p.returncode == 0, p.stderr[-2000:]
            res[n].append(float(np.median(history(ws, name).tokens_per_s.values[3:])))
        diffs.append(float(np.abs(history(ws, f"p1r{r}").loss.values - history(ws, f"p2r{r}").loss.values).max()))
    one, two = median(res[1]), median(res[2])
    print(f"1 process  (2 threads, batch 16 x 128): {one:,.0f} tokens/s")
    print(f"2 processes (1 thread each, 8 x 128 each): {two:,.0f} tokens/s   ratio {two / one:.2f}")
    print(f"largest loss difference over {steps} steps between the two: {max(diffs):.2e}")
    print("(two cores: DDP cannot beat one process with two threads here; it is for more cores and machines)")


if __name__ == "__main__":
    main()
