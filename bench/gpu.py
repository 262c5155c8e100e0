"""Training speed on a CUDA GPU: tokens/s, MFU and peak memory for the presets micro to small at fp32, bf16 and
bf16 + torch.compile, and one GPU against all of the machine's GPUs (torchrun + DDP over NCCL).

Usage: python bench/gpu.py [--quick] [--presets micro,tiny,default,small] [--steps N] [--out FILE]
       python bench/gpu.py --device cpu --presets nano --steps 6 --modes fp32   (checks this script on a CPU)

Without a CUDA GPU it says so and exits 0 without measuring anything (unless --device asks for another device:
then the same path runs there, as a check of the script; the figures are not GPU figures).

Each configuration trains a fresh model on the standard library's docstrings through the Trainer, exactly as
`cllm train` does, for --steps steps with a batch per preset (micro 64 x 256, tiny 32 x 512, default 32 x 512,
small 16 x 1024; per GPU). tokens/s is the median of the per-step rates of the model's history after the first
three steps; the first step's seconds (where compilation happens) are reported apart; MFU is the training FLOPs
per second over the matrix-product peak measured on the device at the run's precision (`device.matmul_peak`).
Several GPUs: the same per-GPU batch on every GPU, so the ratio is the scaling of tokens/s with the GPU count.
Figures are printed as a table and written as JSON to --out (default bench/results/gpu.json).
"""
import json, socket, tempfile, time
from pathlib import Path
import numpy as np
import torch
from common import parser, corpus_text, ROOT
from crystalline_nb.workspace import Workspace
from crystalline_nb.trainer import Trainer
from crystalline_nb.config import flops_per_token
from crystalline_nb.device import resolve_device, resolve_precision, matmul_peak, device_label
from crystalline_nb.history import history

BATCH = {"nano": (16, 128), "micro": (64, 256), "tiny": (32, 512), "default": (32, 512), "small": (16, 1024)}
MODES = {"fp32": ("fp32", False), "bf16": ("bf16", False), "bf16+compile": ("bf16", True)}


def run_one(ws, preset, dev, mode, steps, text, nproc=1):
    precision, comp = MODES[mode]
    precision = resolve_precision(precision, dev)
    B, T = BATCH[preset]
    name = f"{preset}-{mode.replace('+', '-')}-{nproc}"
    ws.create(name, preset_name=preset, target_epochs=1000)
    ws.queue(name).add_text(text, source="docstrings")
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    if nproc == 1:
        s = Trainer(ws, name, device=str(dev), precision=precision, compile=comp, batch_size=B, seq_len=T,
                    save_every=10**9, save_seconds=1e9).run(max_steps=steps)
        first = s["first_step_seconds"]
    else:
        from crystalline_nb.distributed import run_distributed
        p = run_distributed(ws.home, name, nproc, capture=True, run={"max_steps": steps}, device=dev.type,
                            precision=precision, compile=comp, batch_size=B, seq_len=T, save_every=10**9)
        if p.returncode != 0:
            raise SystemExit(f"error: {nproc} processes failed: {p.stderr[-2000:]}")
        first = None
    wall = time.perf_counter() - t0
    h = history(ws, name)
    tps = float(np.median(h.tokens_per_s.values[3:])) if h.sizes["step"] > 4 else float(h.tokens_per_s.values[-1])
    cfg = ws.config(name)
    peak = matmul_peak(dev, precision)
    mfu = tps * flops_per_token(cfg, T) / (peak * nproc)
    mem = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" and nproc == 1 else None
    return dict(preset=preset, mode=mode, precision=precision, compile=comp, gpus=nproc, batch=B, seq_len=T,
                params=ws.load(name).model.n_params, tokens_per_s=tps, mfu=mfu, peak_flops=peak,
                first_step_seconds=first, peak_memory_gib=mem, wall_seconds=wall,
                final_loss=float(h.loss.values[-1]))


def main():
    ap = parser(__doc__)
    ap.add_argument("--device", default="cuda", help="cuda (default), or another device to check the script")
    ap.add_argument("--presets", default="micro,tiny,default,small")
    ap.add_argument("--modes", default=",".join(MODES), help=f"some of {', '.join(MODES)}")
    ap.add_argument("--steps", type=int, default=None, help="steps per configuration (default 40; --quick 15)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu.json"))
    a = ap.parse_args()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA GPU on this machine: nothing measured (run this where one is; see bench/README.md)")
        return
    dev = resolve_device(a.device)
    steps = a.steps or (15 if a.quick else 40)
    presets, modes = a.presets.split(","), a.modes.split(",")
    ws = Workspace(tempfile.mkdtemp())
    text = corpus_text(3_000_000 if a.quick else 12_000_000)
    rows = []
    print(f"device: {device_label(dev)}; torch {torch.__version__}; {steps} steps per configuration")
    print(f"{'preset':8} {'mode':13} {'gpus':>4} {'params':>11} {'batch':>10} {'tokens/s':>11} {'MFU':>6} "
          f"{'1st step':>9} {'memory':>8}")
    for preset in presets:
        for mode in modes:
            r = run_one(ws, preset, dev, mode, steps, text)
            rows.append(r)
            first = f"{r['first_step_seconds']:.1f} s" if r["first_step_seconds"] is not None else "-"
            mem = f"{r['peak_memory_gib']:.1f} GiB" if r["peak_memory_gib"] is not None else "-"
            print(f"{preset:8} {mode:13} {1:>4} {r['params']:>11,} {r['batch']:>4} x {r['seq_len']:<4} "
                  f"{r['tokens_per_s']:>11,.0f} {r['mfu']:>6.1%} {first:>9} {mem:>8}")
    n = torch.cuda.device_count() if dev.type == "cuda" else 1
    if n > 1:
        preset = "small" if "small" in presets else presets[-1]
        one = next(r for r in rows if r["preset"] == preset and r["mode"] == "bf16")
        r = run_one(ws, preset, dev, "bf16", steps, text, nproc=n)
        rows.append(r)
        print(f"{preset:8} {'bf16':13} {n:>4} {r['params']:>11,} {r['batch']:>4} x {r['seq_len']:<4} "
              f"{r['tokens_per_s']:>11,.0f} {r['mfu']:>6.1%}  -> {r['tokens_per_s'] / one['tokens_per_s']:.2f}x "
              f"the tokens/s of one GPU")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(host=socket.gethostname(), device=device_label(dev), torch=torch.__version__,
                                   steps=steps, rows=rows), indent=1))
    print(f"figures written to {out}")


if __name__ == "__main__":
    main()
