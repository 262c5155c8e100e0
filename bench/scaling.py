"""Scaling with corpus size: epoch time should grow linearly, memory should stay flat (memory-mapped shards).

Usage: python bench/scaling.py [--quick] [--rss] [--gb N]
For corpora of 1x, 4x and 16x a base size, a fresh process ingests the corpus and trains exactly one epoch of
a small model; it reports the wall time of the epoch's steps (start-up excluded), its peak resident memory
(VmHWM) and its anonymous memory (RssAnon, which excludes file-backed pages). Time per token should stay about
constant.
--rss: training memory from 1x to 64x of the 16x point of --quick (905k tokens): a fresh process per corpus
ingests it and trains --steps steps (an epoch of 58M tokens takes hours on a CPU; memory is settled after a few
hundred steps), and reports its memory; flat means 64x/1x within 1.10.
--gb N: N GB of text written as 100 files, ingested by `Queue.add_paths` in a fresh process (seconds, MB/s, peak
memory of the ingestion, and the ratio to a reference pass over the same files in the same run:
`common.reference_pass`), then --steps steps trained on it (peak and anonymous memory).
--epoch-data (with --gb): then, in another fresh process, the data side of one whole epoch: every training window of
the epoch read in the trainer's order (its `EpochPlan` and `gather`, batches of 32 x 64) without the model, with
the time, the memory at each tenth of the epoch, and a check that every training position was read exactly once (the
sum of the tokens read against the corpus's sum less its held-out spans): what the corpus and the plan cost.
--epoch-train (with --gb): then one whole epoch trained with `cllm train` in a fresh process (a model of one layer of
width 32, batch 32 x 64, lr 3e-3), its resident and anonymous memory sampled every 2 s from /proc: the time, tokens/s,
memory at each tenth of the run, the loss at its start and end, held-out loss, and the epochs the model has trained.
It takes about an hour for 1 GB on a 2-core CPU (300-400k tokens/s).
"""
import json, os, re, subprocess, sys, tempfile, textwrap, time
from pathlib import Path
from common import machine, parser, reference_pass

CHILD = textwrap.dedent("""
    import json, sys, tempfile, time
    sys.path.insert(0, sys.argv[3])
    from common import corpus_text
    from crystalline_nb.workspace import Workspace
    from crystalline_nb.trainer import Trainer
    n, home, steps, folder, layers = int(sys.argv[1]), sys.argv[2], int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
    st = lambda: dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
    kb = lambda s, k: int(s[k].split()[0]) / 1024
    ws = Workspace(home)
    if not ws.exists("m"):
        ws.create("m", preset_name="nano", d_model=32, n_head=2, d_ff=64, max_seq_len=64, n_layer=layers)
    t0 = time.perf_counter()
    if n < 0:  # trained only: the queue was filled by another process
        pass
    elif folder != "-":
        rep = ws.queue("m").add_paths([folder], near_duplicates=False)
        assert not rep.rejected, rep.summary()
    else:
        text = corpus_text(n)
        for i in range(0, n, 200_000):
            ws.queue("m").add_text(text[i:i + 200_000], source=f"part{i}", near_duplicates=False)
        del text
    ingest, s0 = time.perf_counter() - t0, st()
    tr = Trainer(ws, "m", target_epochs=1, batch_size=32, seq_len=64, threads=2, save_every=10**9, save_seconds=1e9)
    ts = []
    tr.subscribe(lambda e: ts.append(time.perf_counter()) if e["type"] in ("start", "step") else None)
    s = tr.run(max_steps=steps or None) if steps >= 0 else dict(tokens=0, seconds=0.0)
    ts = ts or [0.0, 0.0]
    s["seconds"] = ts[-1] - ts[0]                       # the steps, without process start-up
    s1 = st()
    print(json.dumps(dict(tokens=s["tokens"], seconds=s["seconds"], hwm=kb(s1, "VmHWM"), anon=kb(s1, "RssAnon"),
                          file=kb(s1, "RssFile"), queue=ws.queue_summary("m")["tokens"], ingest_s=ingest,
                          ingest_hwm=kb(s0, "VmHWM"))))
""")


WALK = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from crystalline_nb.workspace import Workspace
    from crystalline_nb.epochs import EpochPlan, gather
    ws, B, T = Workspace(sys.argv[1]), 32, 64
    st = lambda: dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
    kb = lambda s, k: int(s[k].split()[0]) / 1024
    t0 = time.perf_counter()
    corpus = ws.queue("m").corpus()
    plan = EpochPlan(len(corpus), T, 0, 0, 0)
    built, n, total, marks, got = time.perf_counter() - t0, plan.n_train, 0, [], 0
    for off in range(0, n, B * T):
        x, y = gather(corpus, plan.runs(off, min(B * T, n - off)))
        total += int(x.sum(dtype=np.int64))
        got += len(x)
        if len(marks) < 10 and got >= n * (len(marks) + 1) / 10:
            s = st()
            marks.append((round(time.perf_counter() - t0, 1), round(kb(s, "VmRSS")), round(kb(s, "RssAnon"))))
    walk, hwm = time.perf_counter() - t0, kb(st(), "VmHWM")  # before the check, which reads 16M tokens at a time
    whole = 0
    for i in range(0, len(corpus) - 1, 1 << 24):
        whole += int(corpus.read(i, min(i + (1 << 24), len(corpus) - 1)).sum(dtype=np.int64))
    held = sum(int(corpus.read(int(a), int(a) + int(k)).sum(dtype=np.int64))
               for a, k in zip(plan.val_starts, plan.val_lens))
    print(json.dumps(dict(tokens=got, n_train=n, seconds=walk, plan_s=built, marks=marks, hwm=hwm,
                          exact=bool(got == n and total == whole - held))))
""")


def child(chars: int, steps: int = 0, folder: str = "-", home: str | None = None, layers: int = 2) -> dict:
    "Run CHILD in a fresh process (chars < 0: train only; steps < 0: ingest only); its figures."
    here = str(Path(__file__).resolve().parent)
    r = subprocess.run([sys.executable, "-c", CHILD, str(chars), home or tempfile.mkdtemp(), here, str(steps), folder,
                        str(layers)], capture_output=True, text=True, timeout=7200)
    if r.returncode:
        raise SystemExit(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def memory(pid: int) -> tuple[float, float] | None:
    "Resident and anonymous memory of a running process, MiB (None once it is gone)."
    try:
        s = dict(l.split(":", 1) for l in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in l)
        return int(s["VmRSS"].split()[0]) / 1024, int(s["RssAnon"].split()[0]) / 1024
    except (OSError, KeyError):
        return None


def train_epoch(home: str) -> dict:
    "One whole epoch of model m with `cllm train` in a fresh process, its memory sampled every 2 s: its figures."
    log = Path(home) / "epoch.log"
    cmd = [sys.executable, "-c", "from crystalline_nb.cli import main\nmain()", "train", "m", "--home", home,
           "--epochs", "1", "--batch-size", "32", "--seq-len", "64", "--lr", "3e-3", "--warmup", "200",
           "--threads", "2"]
    t0, samples = time.perf_counter(), []
    with open(log, "w") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        while p.poll() is None:
            m = memory(p.pid)
            if m and m[0] >= 1:  # not in the instant before the interpreter is loaded
                samples.append((time.perf_counter() - t0, *m))
            time.sleep(2)
    text = log.read_text()
    if p.returncode:
        raise SystemExit(text[-2000:])
    done = re.search(r"target reached: ([\d,]+) steps, ([\d,]+) tokens in \S+ loss ([\d.]+) -> ([\d.]+), "
                     r"epochs ([\d.]+)/1", text)
    val = re.search(r"epoch 1 done: train loss ([\d.]+), val loss ([\d.]+)", text)
    state = json.loads((Path(home) / "models" / "m" / "state.json").read_text())
    seconds = time.perf_counter() - t0
    tenths = [min(samples, key=lambda s: abs(s[0] - seconds * k / 10)) for k in range(1, 11)]
    return dict(seconds=seconds, steps=int(done[1].replace(",", "")), tokens=int(done[2].replace(",", "")),
                first=float(done[3]), last=float(done[4]), train=float(val[1]), val=float(val[2]),
                epochs_trained=state.get("epochs_trained"), tenths=tenths, peak=max(s[1] for s in samples),
                peak_anon=max(s[2] for s in samples))


def write_corpus(folder: Path, total: int, files: int = 100) -> int:
    "`total` bytes of text in `files` files (the same text, each file opened by a line of its own); bytes written."
    from common import corpus_text
    block = corpus_text(min(total // files, 20_000_000))
    folder.mkdir(parents=True)
    n = 0
    for i in range(files):
        with open(folder / f"part{i:03d}.txt", "w") as f:
            f.write(f"part {i} of the scaling corpus\n")
            while f.tell() < total // files:
                f.write(block)
        n += (folder / f"part{i:03d}.txt").stat().st_size
    return n


def main():
    ap = parser(__doc__)
    ap.add_argument("--rss", action="store_true", help="training memory at 1x and 64x of 905k tokens")
    ap.add_argument("--gb", type=float, default=0, help="ingest this many GB of text from files, then train")
    ap.add_argument("--steps", type=int, default=300, help="steps trained in --rss and --gb (default 300)")
    ap.add_argument("--epoch-data", action="store_true", help="with --gb: read one whole epoch's windows")
    ap.add_argument("--epoch-train", action="store_true", help="with --gb: train one whole epoch (one layer)")
    a = ap.parse_args()
    if (a.epoch_data or a.epoch_train) and not a.gb:
        ap.error("--epoch-data and --epoch-train go with --gb N")
    if a.rss:
        rows = []
        for f in (1, 64):  # ingested in one process, trained in another: the training's own memory
            home = tempfile.mkdtemp()
            child(960_000 * f, -1, home=home)
            rows.append(dict(child(-1, a.steps, home=home), factor=f))
        print(f"{'corpus':>7}{'queue tokens':>14}{'steps':>7}{'peak RSS MiB':>14}{'anon MiB':>10}{'file MiB':>10}")
        for d in rows:
            print(f"{d['factor']:>6}x{d['queue']:>14,}{a.steps:>7}{d['hwm']:>14.0f}{d['anon']:>10.0f}"
                  f"{d['file']:>10.0f}")
        print(f"\ntraining memory 64x/1x: peak RSS {rows[1]['hwm'] / rows[0]['hwm']:.2f}, anonymous "
              f"{rows[1]['anon'] / rows[0]['anon']:.2f} (flat: at most 1.10); file MiB: file-backed pages mapped in "
              "the process (libraries; shards are read with pread and stay in the kernel's cache)")
        return
    if a.gb:
        folder = Path(tempfile.mkdtemp()) / "corpus"
        size = write_corpus(folder, int(a.gb * 1e9))
        home = tempfile.mkdtemp()
        layers = 1 if a.epoch_train else 2
        _, ref1 = reference_pass([folder])  # also brings the files into the page cache
        d = child(0, -1, str(folder), home=home, layers=layers)
        ref = min(ref1, reference_pass([folder])[1])
        trained = child(-1, a.steps, home=home, layers=layers)
        d.update({k: v for k, v in trained.items() if k in ("hwm", "anon", "file")})
        print(f"{size / 1e9:.2f} GB in 100 files: ingested in {d['ingest_s']:.0f} s "
              f"({size / 1e6 / d['ingest_s']:.1f} MB/s),"
              f" {d['queue']:,} tokens; peak RSS of the ingestion {d['ingest_hwm']:.0f} MiB; reference pass (read, "
              f"decode, SHA-256; one process, before and after) {size / 1e6 / ref:.1f} MB/s: ratio "
              f"{ref / d['ingest_s']:.3f} ({machine()})")
        print(f"then {a.steps} steps trained on it in a fresh process: peak RSS {d['hwm']:.0f} MiB, anonymous "
              f"{d['anon']:.0f} MiB, file-backed {d['file']:.0f} MiB")
        if a.epoch_data:
            r = subprocess.run([sys.executable, "-c", WALK, home], capture_output=True, text=True, timeout=7200)
            if r.returncode:
                raise SystemExit(r.stderr[-2000:])
            w = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"one epoch's data in a fresh process: {w['tokens']:,} training positions read in "
                  f"{w['seconds']:.0f} s ({w['tokens'] / w['seconds']:,.0f} tokens/s, the plan built in "
                  f"{w['plan_s']:.1f} s), every position once: {w['exact']}; peak RSS {w['hwm']:.0f} MiB")
            print("at each tenth of the epoch (seconds, RSS MiB, anonymous MiB): "
                  + ", ".join(f"{t} s {r} {an}" for t, r, an in w["marks"]))
        if a.epoch_train:
            e = train_epoch(home)
            print(f"one whole epoch trained by `cllm train` in a fresh process: {e['steps']:,} steps, {e['tokens']:,} "
                  f"tokens in {e['seconds']:.0f} s ({e['tokens'] / e['seconds']:,.0f} tokens/s), loss {e['first']:.3f}"
                  f" -> {e['last']:.3f}, held-out {e['val']:.3f}, epochs trained {e['epochs_trained']}")
            print(f"memory through the epoch: peak RSS {e['peak']:.0f} MiB, anonymous {e['peak_anon']:.0f} MiB, "
                  "at each tenth (seconds, RSS MiB, anonymous MiB): "
                  + ", ".join(f"{t:.0f} s {r:.0f} {an:.0f}" for t, r, an in e["tenths"]))
            flat = e["tenths"][-1][1] / e["tenths"][0][1]
            print(f"RSS at the end / at the first tenth: {flat:.2f} (flat: at most 1.10)")
        return
    base = 60_000 if a.quick else 250_000
    rows = [dict(child(base * f), factor=f) for f in (1, 4, 16)]
    print(f"{'corpus':>7}{'tokens':>12}{'epoch s':>10}{'us/token':>10}{'peak RSS MiB':>14}{'anon MiB':>10}")
    for d in rows:
        print(f"{d['factor']:>6}x{d['tokens']:>12,}{d['seconds']:>10.1f}{1e6 * d['seconds'] / d['tokens']:>10.2f}"
              f"{d['hwm']:>14.0f}{d['anon']:>10.0f}")
    t1, t16 = rows[0]["seconds"] / rows[0]["tokens"], rows[-1]["seconds"] / rows[-1]["tokens"]
    print(f"\ntime per token 16x/1x: {t16 / t1:.2f} (linear time: about 1)")
    print(f"peak RSS 16x/1x: {rows[-1]['hwm'] / rows[0]['hwm']:.2f}; anonymous memory 16x/1x: "
          f"{rows[-1]['anon'] / rows[0]['anon']:.2f} (flat: about 1)")


if __name__ == "__main__":
    main()
