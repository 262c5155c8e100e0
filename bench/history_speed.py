"""How long the panel's History tab takes to compare 5 models of 20,000 steps each (the goal: within 2 s), kernel side:
reading the histories, packing the curves for the browser and writing the runs table.

    python bench/history_speed.py [--models 5] [--steps 20000] [--quick]

The histories are written as a run writes them (steps.csv, epochs.csv, the weights at the last step), with losses
that fall like a real run's; nothing is trained.
"""
import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from crystalline_nb.history import EPOCH_COLS, STEP_COLS  # noqa: E402
from crystalline_nb.model import CLLM  # noqa: E402
from crystalline_nb.workspace import Workspace, weights_bytes  # noqa: E402


def fake_run(ws: Workspace, name: str, steps: int, epochs: int = 10):
    "A model whose history holds `steps` steps and `epochs` epochs, its state and weights at the last step."
    ws.create(name, preset_name="nano")
    d = ws.path(name) / "history"
    d.mkdir(exist_ok=True)
    lines = [",".join(STEP_COLS)]
    for s in range(1, steps + 1):
        row = dict(time=1.7e9 + s, epoch=s * epochs / steps, step=s, tokens=s * 1024,
                   loss=4 * math.exp(-s / (steps / 4)) + 1.2, lr=3e-4, batch_size=8, seq_len=128, grad_norm=1.0,
                   tokens_per_s=20000)
        lines.append(",".join(str(row[c]) for c in STEP_COLS))
    (d / "steps.csv").write_text("\n".join(lines) + "\n")
    rows = [",".join(EPOCH_COLS)]
    for e in range(1, epochs + 1):
        row = dict(epoch=e, time=1.7e9, step=e * steps // epochs, tokens=e * steps // epochs * 1024,
                   train_loss=1.5, val_loss=1.6, n_rows=1)
        rows.append(",".join(str(row[c]) for c in EPOCH_COLS))
    (d / "epochs.csv").write_text("\n".join(rows) + "\n")
    st = json.loads((ws.path(name) / "state.json").read_text())
    st.update(steps=steps, epochs_trained=float(epochs))
    (ws.path(name) / "state.json").write_text(json.dumps(st))
    (ws.path(name) / "model.safetensors").write_bytes(weights_bytes(CLLM(ws.config(name)), steps))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="2 models of 2,000 steps")
    a = ap.parse_args()
    if a.quick:
        a.models, a.steps = 2, 2_000
    from crystalline_nb.panel import ControlPanel
    ws = Workspace(tempfile.mkdtemp())
    for m in range(a.models):
        fake_run(ws, f"run{m}", a.steps)
    p = ControlPanel(ws.home)
    p.hist.models.value = tuple(ws.names())
    times = []
    for _ in range(a.rounds):
        t0 = time.perf_counter()
        p.hist.plot()
        times.append(time.perf_counter() - t0)
    sent = sum(len(c["data"]) + len(c["val"]) for c in p.hist.chart.view.compare)
    print(f"History tab, {a.models} models x {a.steps:,} steps: {min(times):.2f} s (best of {a.rounds}; "
          f"all {', '.join(f'{t:.2f}' for t in times)}), {sent / 1e6:.2f} MB to the browser; goal: within 2 s")
    if p.message.value:
        print("message:", p.message.value)


if __name__ == "__main__":
    main()
