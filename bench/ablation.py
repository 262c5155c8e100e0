"""Does each crystalline option help? Matched small models, the same data, token budget and held-out split,
several seeds per variant; held-out loss curves and tokens/s saved as an xarray Dataset.

Usage: python bench/ablation.py [--quick] [--out PATH]
Corpus: the docstrings of the Python standard library (ships with every Python), one document per module;
every fifth module is held out. Variants: a standard baseline (normal init, learned positions, no bias),
each crystalline option alone (lattice init, clock positions, angular bias), all three together, and rope
positions as a second standard reference. The results feed nbs/tutorials/ablation.ipynb.
"""
import ast, json, math, sysconfig, tempfile, time
from pathlib import Path
import numpy as np
import torch
from common import parser, ROOT
from crystalline_nb.workspace import Workspace
from crystalline_nb.trainer import Trainer

VARIANTS = {
    "baseline": dict(embedding_init="normal", positional="learned", attention_bias="none"),
    "lattice init": dict(embedding_init="lattice", positional="learned", attention_bias="none"),
    "clock positions": dict(embedding_init="normal", positional="clock", attention_bias="none"),
    "angular bias": dict(embedding_init="normal", positional="learned", attention_bias="angular"),
    "all crystalline": dict(embedding_init="lattice", positional="clock", attention_bias="angular"),
    "rope (reference)": dict(embedding_init="normal", positional="rope", attention_bias="none"),
}
ARCH = dict(d_model=64, n_layer=4, n_head=4, d_ff=256, max_seq_len=128)


def documents(max_docs=400):
    "(module name, docstrings) for the standard library's modules, sorted by name."
    out = []
    for f in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        docs = [
            d
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            for d in [ast.get_docstring(n)]
            if d and len(d) > 40
        ]
        if docs:
            out.append((f.stem, "\n\n".join(docs)))
    return out[:max_docs]


def heldout_windows(tok, texts, T, n=96):
    ids = np.concatenate([np.asarray(tok.encode(t) + [tok.eos_id]) for t in texts])
    starts = np.linspace(0, len(ids) - T - 2, n).astype(int)
    x = torch.from_numpy(np.stack([ids[s:s + T] for s in starts])).long()
    y = torch.from_numpy(np.stack([ids[s + 1:s + T + 1] for s in starts])).long()
    return x, y


@torch.no_grad()
def heldout_loss(model, x, y):
    model.eval()
    l = sum(model(x[i:i + 32], y[i:i + 32])[1].item() * len(x[i:i + 32]) for i in range(0, len(x), 32)) / len(x)
    model.train()
    return l


def main():
    ap = parser(__doc__)
    ap.add_argument("--out", default=str(ROOT / "nbs" / "tutorials" / "ablation_results.json"))
    a = ap.parse_args()
    steps, every, seeds = (60, 20, [0, 1, 2]) if a.quick else (600, 50, [0, 1, 2])
    B, T = 16, 64
    docs = documents()
    train = [d for i, d in enumerate(docs) if i % 5 != 4]
    held = [d for i, d in enumerate(docs) if i % 5 == 4]
    print(
        f"{len(train)} training documents, {len(held)} held out; {len(VARIANTS)} variants x {len(seeds)} seeds x "
        f"{steps} steps of {B}x{T} tokens"
    )
    torch.set_num_threads(2)
    evals = list(range(every, steps + 1, every))
    loss = np.full((len(VARIANTS), len(seeds), len(evals)), np.nan)
    tps = np.full((len(VARIANTS), len(seeds)), np.nan)
    t_all = time.time()
    for vi, (vname, opts) in enumerate(VARIANTS.items()):
        for si, seed in enumerate(seeds):
            ws = Workspace(tempfile.mkdtemp())
            ws.create("m", seed=seed, target_epochs=1000, **ARCH, **opts)
            ws.queue("m").add([(f"stdlib:{n}", "text", (lambda t=t: iter([t]))) for n, t in train])
            lm = ws.load("m")
            x, y = heldout_windows(lm.tokenizer, [t for _, t in held], T)
            rates = []
            for ei, upto in enumerate(evals):
                tr = Trainer(
                    ws,
                    "m",
                    batch_size=B,
                    seq_len=T,
                    lr=2e-3,
                    warmup=30,
                    schedule="constant",
                    seed=seed,
                    threads=2,
                    save_every=10**9,
                    save_seconds=1e9,
                )
                tr.subscribe(lambda e: rates.append(e["tokens_per_s"]) if e["type"] == "step" else None)
                tr.run(max_steps=upto - (evals[ei - 1] if ei else 0))
                loss[vi, si, ei] = heldout_loss(ws.load("m").model, x, y)
            tps[vi, si] = float(np.median(rates[3:])) if len(rates) > 3 else float("nan")
            print(
                f"{vname:<18} seed {seed}: held-out loss {loss[vi, si, -1]:.4f}, {tps[vi, si]:,.0f} tokens/s",
                flush=True,
            )
    import xarray as xr
    ds = xr.Dataset(dict(heldout_loss=(("variant", "seed", "step"), loss), tokens_per_s=(("variant", "seed"), tps)),
                    coords=dict(variant=list(VARIANTS), seed=seeds, step=evals))
    ds.attrs.update(
        corpus="Python standard library docstrings, one document per module, every fifth module held out",
        arch=json.dumps(ARCH),
        batch=B,
        seq_len=T,
        lr=2e-3,
        tokens_per_run=steps * B * T,
        variants=json.dumps(VARIANTS),
        python=sysconfig.get_python_version(),
        seconds=round(time.time() - t_all),
    )
    Path(a.out).write_text(json.dumps(ds.to_dict(data="list"), indent=1))
    print(f"\nsaved {a.out} ({time.time() - t_all:.0f} s)")
    final = ds.heldout_loss.isel(step=-1)
    base = final.sel(variant="baseline")
    for v in ds.variant.values:
        f = final.sel(variant=v)
        print(
            f"{v:<18} {float(f.mean()):.4f} ± {float(f.std(ddof=1)):.4f}   diff vs baseline "
            f"{float((f - base).mean()):+.4f}   {float(ds.tokens_per_s.sel(variant=v).mean()):,.0f} tok/s"
        )


if __name__ == "__main__":
    main()
