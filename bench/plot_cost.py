"""What one live-plot update costs the kernel that trains, for three ways of drawing it, measured in a real kernel.

Usage: python bench/plot_cost.py [--quick] [--points N ...]

A kernel is started (jupyter_client, the venv's python3) and, for each curve length, times the update that the panel
makes while a run trains: a point is added and the plot is sent again, 20 times (median). The widgets are displayed,
so every update goes out as comm messages on the kernel's sockets as in JupyterLab.
  matplotlib  the figure drawn in the kernel (Agg) and sent as a PNG to an Image widget (the panel before the change)
  bqplot      a bqplot figure (raw and smoothed lines, validation scatter) whose arrays are replaced; skipped when
              bqplot is not installed (it is a dev dependency)
  LossView    the panel's plot: the points packed as float64 columns for the browser, which draws them
The cost of drawing in the browser is the browser's, on the machine of whoever watches, not the training process's.
"""
import json, sys
from common import parser, ROOT

SETUP = r'''
import json, math, time, statistics, numpy as np, ipywidgets as W
from IPython.display import display
from crystalline_nb.panel import LossPlot, fig_png, smooth

def fill(p, n):
    p.reset("bench")
    for i in range(n):
        p.add(i / 100, 3 * math.exp(-i / (n / 4)) + 1.2 + 0.1 * math.sin(i), step=i, tokens=i * 1024, t=1e9 + i)
    for e in range(1, 11):
        p.add_val(e * n / 1000, 1.5, step=e * n // 10)
    p.mark(n // 2, "resumed")

def timed(update, p, reps):
    out, size = [], 0
    for r in range(reps):
        p.add(p.live["epochs"][-1] + 0.01, 1.3, step=p.live["step"][-1] + 1, tokens=0, t=2e9)
        t0 = time.perf_counter()
        size = update()
        out.append(time.perf_counter() - t0)
    return statistics.median(out) * 1000, size
'''

CASES = {
    "matplotlib": r'''
p = LossPlot()
fill(p, N)
img = W.Image(format="png")
display(img)
def update():
    img.value = fig_png(p.figure())
    return len(img.value)
''',
    "bqplot": r'''
import bqplot as bq
p = LossPlot()
fill(p, N)
xs, ys = bq.LinearScale(), bq.LinearScale()
lines = bq.Lines(scales=dict(x=xs, y=ys), colors=["#1f77b4", "#1f77b4"], opacities=[0.3, 1.0])
dots = bq.Scatter(scales=dict(x=xs, y=ys), marker="diamond", colors=["#d62728"])
axes = [bq.Axis(scale=xs, label="epochs"), bq.Axis(scale=ys, orientation="vertical")]
fig = bq.Figure(marks=[lines, dots], axes=axes,
                interaction=bq.interacts.PanZoom(scales=dict(x=[xs], y=[ys])))
display(fig)
def update():
    L = p.live
    x, y = np.asarray(L["epochs"]), np.asarray(L["y"])
    with lines.hold_sync():
        lines.x, lines.y = x, np.vstack([y, smooth(L["y"], 0.6)])
    dots.x, dots.y = np.asarray(L["vx"]), np.asarray(L["vy"])
    return 3 * x.nbytes + 2 * dots.x.nbytes
''',
    "LossView": r'''
p = LossPlot()
fill(p, N)
display(p.view)
def update():
    p.render()
    return len(p.view.live) + len(p.view.val)
''',
}


def main():
    ap = parser(__doc__)
    ap.add_argument("--points", type=int, nargs="+", default=None, help="curve lengths (default 2000 20000)")
    a = ap.parse_args()
    points = a.points or ([2000] if a.quick else [2000, 20000])
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT))
    results = []

    def run(code):
        out = []

        def hook(msg):
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append("ERROR " + msg["content"]["ename"] + ": " + msg["content"]["evalue"])
        kc.execute_interactive(code, output_hook=hook, timeout=600)
        return "".join(out)

    try:
        run(SETUP)
        for n in points:
            for name, code in CASES.items():
                if name == "bqplot" and "ModuleNotFoundError" in run("import bqplot"):
                    print(f"{n:>7,} points  {name:<11} skipped: bqplot is not installed", flush=True)
                    continue
                got = run(f"N = {n}\n{code}\nms, size = timed(update, p, 20)\nprint(json.dumps([ms, size]))")
                if got.startswith("ERROR"):
                    sys.exit(f"{name}: {got.strip()}")
                ms, size = json.loads(got.strip().splitlines()[-1])
                results.append((n, name, ms, size))
                print(f"{n:>7,} points  {name:<11} {ms:8.2f} ms per update  {size / 1024:8.1f} KiB sent", flush=True)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    print("\nAt one update a second, the share of a training process's time each costs:")
    for n, name, ms, size in results:
        print(f"  {n:>7,} points  {name:<11} {ms / 10:6.2f}%")


if __name__ == "__main__":
    main()
