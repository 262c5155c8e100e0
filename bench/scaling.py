"""Scaling with corpus size: epoch time should grow linearly, memory should stay flat (memory-mapped shards).

Usage: python bench/scaling.py [--quick]
For corpora of 1x, 4x and 16x a base size, a fresh process ingests the corpus and trains exactly one epoch of
a small model; it reports the wall time of the epoch's steps (start-up excluded), its peak resident memory (VmHWM) and its anonymous memory
(RssAnon, which excludes the pages of memory-mapped files). Time per token should stay about constant.
"""
import json, subprocess, sys, tempfile, textwrap
from common import parser

CHILD = textwrap.dedent("""
    import json, sys, tempfile, time
    sys.path.insert(0, sys.argv[3])
    from common import corpus_text
    from crystalline_nb.workspace import Workspace
    from crystalline_nb.trainer import Trainer
    n = int(sys.argv[1]); home = sys.argv[2]
    ws = Workspace(home); ws.create("m", preset_name="nano", d_model=32, n_head=2, d_ff=64, max_seq_len=64)
    text = corpus_text(n)
    for i in range(0, n, 200_000): ws.queue("m").add_text(text[i:i + 200_000], source=f"part{i}", near_duplicates=False)
    del text
    tr = Trainer(ws, "m", target_epochs=1, batch_size=32, seq_len=64, threads=2, save_every=10**9, save_seconds=1e9)
    ts = []
    tr.subscribe(lambda e: ts.append(time.perf_counter()) if e["type"] in ("start", "step") else None)
    s = tr.run()
    s["seconds"] = ts[-1] - ts[0]                       # the epoch's steps, without process start-up
    st = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
    kb = lambda k: int(st[k].split()[0]) / 1024
    print(json.dumps(dict(tokens=s["tokens"], seconds=s["seconds"], hwm=kb("VmHWM"), anon=kb("RssAnon"))))
""")


def main():
    a = parser(__doc__).parse_args()
    base = 60_000 if a.quick else 250_000
    import pathlib
    here = str(pathlib.Path(__file__).resolve().parent)
    rows = []
    for f in (1, 4, 16):
        r = subprocess.run([sys.executable, "-c", CHILD, str(base * f), tempfile.mkdtemp(), here], capture_output=True, text=True, timeout=3600)
        if r.returncode: raise SystemExit(r.stderr[-2000:])
        d = json.loads(r.stdout.strip().splitlines()[-1]); d["factor"] = f; rows.append(d)
    print(f"{'corpus':>7}{'tokens':>12}{'epoch s':>10}{'us/token':>10}{'peak RSS MiB':>14}{'anon MiB':>10}")
    for d in rows:
        print(f"{d['factor']:>6}x{d['tokens']:>12,}{d['seconds']:>10.1f}{1e6 * d['seconds'] / d['tokens']:>10.2f}{d['hwm']:>14.0f}{d['anon']:>10.0f}")
    t1, t16 = rows[0]["seconds"] / rows[0]["tokens"], rows[-1]["seconds"] / rows[-1]["tokens"]
    print(f"\ntime per token 16x/1x: {t16 / t1:.2f} (linear time: about 1)")
    print(f"peak RSS 16x/1x: {rows[-1]['hwm'] / rows[0]['hwm']:.2f}; anonymous memory 16x/1x: {rows[-1]['anon'] / rows[0]['anon']:.2f} (flat: about 1)")


if __name__ == "__main__":
    main()
