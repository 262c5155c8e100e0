"""Training speed with the panel's live plot subscribed versus without, measured side by side in one run.

Usage: python bench/panel_overhead.py [--quick]
Runs alternate (plain, panel, plain, panel, ...) on the same model and data so that machine noise hits both alike,
and prints tokens/s for each and the ratio. Target: the panel costs at most 2% (ratio >= 0.98).
"""
import argparse, statistics, sys, tempfile, time
from crystalline_nb.workspace import Workspace
from crystalline_nb.trainer import Trainer
from crystalline_nb.panel import ControlPanel


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    a = ap.parse_args()
    steps = a.steps or (40 if a.quick else 120)
    rounds = a.rounds or (2 if a.quick else 4)
    home = tempfile.mkdtemp()
    ws = Workspace(home)
    text = "".join(
        f"Line {i}: the clock lattice has rings of twelve, sixty, sixty and one hundred positions.\n"
        for i in range(4000)
    )
    for name in ("plain", "panel"):
        ws.create(name, preset_name="micro")
        ws.queue(name).add_text(text, source="lines")
    panel = ControlPanel(home)
    panel.model.value = "panel"
    panel.train.plot.reset("panel")
    res = {"plain": [], "panel": []}
    Trainer(ws, "plain", target_epochs=1000, batch_size=8, seq_len=128, threads=2).run(
        max_steps=10
    )  # warm-up, not counted
    for r in range(rounds):
        for name in ("plain", "panel"):
            tr = Trainer(
                ws,
                name,
                target_epochs=1000,
                batch_size=8,
                seq_len=128,
                lr=1e-3,
                threads=2,
                save_every=10**9,
                save_seconds=1e9,
            )
            if name == "panel":
                tr.subscribe(panel.train.on_event)
            s = tr.run(max_steps=steps)
            res[name].append(s["tokens"] / s["seconds"])
            print(f"round {r + 1} {name:>5}: {res[name][-1]:,.0f} tokens/s", flush=True)
    p, q = statistics.median(res["plain"]), statistics.median(res["panel"])
    print(f"\nplain training      {p:,.0f} tokens/s (median of {rounds})")
    print(
        f"with the live panel {q:,.0f} tokens/s ({panel.train.plot.renders} plot renders, "
        f"last {panel.train.plot.cost * 1000:.0f} ms)"
    )
    print(f"ratio panel/plain   {q / p:.3f}  (target >= 0.98)")


if __name__ == "__main__":
    main()
