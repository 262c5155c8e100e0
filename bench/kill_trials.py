"""Kill trials: SIGKILL at random moments of training, checkpointing, epoch ends, growth and ingesting; after every
kill the model loads, the history has no duplicated or missing rows (steps and epochs), the queue reads whole and
the ledger agrees with it.

Usage: python bench/kill_trials.py [--quick] [--kills N]
Each trial starts a real `cllm` process (training with a checkpoint after every step, so kills often land
inside a checkpoint, or ingesting a large file) and kills it at a random moment once it is at work.
At the end, training resumes to its target and must match an uninterrupted run of the same model, loss for loss.
"""
import json, random, signal, subprocess, sys, tempfile, time
from pathlib import Path
from common import parser, corpus_text, BIN
from crystalline_nb.workspace import Workspace
from crystalline_nb.history import history


def check(ws, name):
    lm = ws.load(name)                                                 # loads (rolls a cut checkpoint forward)
    ds = history(ws, name)
    steps = ds.step.values.tolist()
    assert steps == list(range(1, lm.state["steps"] + 1)), "history rows do not match the checkpoint"
    ep = ds.epoch.values.tolist()
    assert ep == list(range(1, len(ep) + 1)), f"epoch rows duplicated or missing: {ep}"
    assert ep == list(range(1, int(lm.state["epochs_trained"]) + 1)), "epoch rows disagree with epochs_trained"
    q = ws.queue(name)
    rows = q.rows()
    c = q.corpus()
    data = c.read(0, len(c))
    for i, r in enumerate(rows):
        seg = data[int(c.starts[i]):int(c.starts[i + 1])]
        assert len(seg) == r["tokens"] and seg[-1] == lm.tokenizer.eos_id, f"source {i} is not whole"
    assert len(ws.ledger(name)) == len(rows), "ledger and queue disagree"
    return lm.state["steps"], len(rows)


def main():
    ap = parser(__doc__)
    ap.add_argument("--kills", type=int, default=None)
    a = ap.parse_args()
    kills_wanted = a.kills or (20 if a.quick else 100)
    home = Path(tempfile.mkdtemp())
    ws = Workspace(home)
    text = corpus_text(40_000)
    big = home / "big"
    big.mkdir()
    chunk = corpus_text(3_000_000)
    for i in range(6):
        (big / f"part{i:02d}.txt").write_text((chunk + f"\nvariant {i}\n") * 8)      # about 24 MB each
    for name in ("ref", "k", "ing"):  # "ing" takes the ingests, so that "k" keeps the data of "ref"
        ws.create(name, preset_name="nano", d_model=32, n_head=2, d_ff=64, max_seq_len=64)
        ws.queue(name).add_text(text, source="base")
    epochs, grow_at = ("6", 3) if a.quick else ("30", 4)
    # both models grow from 2 to 3 layers when they reach `grow_at` epochs: the reference at once, the killed one
    # in whichever run gets there (kills land inside growth and its checkpoint too)

    def train(name, upto=None):
        target, extra = (str(grow_at), []) if upto == "grow" else (epochs, ["--layers", "3"])
        return [str(BIN / "cllm"), "--home", str(home), "train", name, "--epochs", target, "--batch-size", "8",
                "--seq-len", "32", "--threads", "1", "--save-every", "1", *extra]

    def train_k():
        return train("k", "grow" if ws.read_state("k")["epochs_trained"] < grow_at else None)

    subprocess.run(train("ref", "grow"), check=True, capture_output=True)
    subprocess.run(train("ref"), check=True, capture_output=True)
    rng = random.Random(1)
    counts = {"training": 0, "ingesting": 0}
    t0 = time.time()
    while sum(counts.values()) < kills_wanted:
        what = "ingesting" if rng.random() < 0.3 else "training"
        hist = home / "models" / "k" / "history" / "steps.csv"
        before = len(hist.read_text().splitlines()) if hist.exists() else 0
        if what == "training":
            p = subprocess.Popen(train_k(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while p.poll() is None and (len(hist.read_text().splitlines()) if hist.exists() else 0) <= before:
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.5))
        else:
            p = subprocess.Popen(
                [str(BIN / "cllm"), "--home", str(home), "add", "ing", str(big / f"part{rng.randrange(6):02d}.txt")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(1.0, 3.0))
        if p.poll() is not None:
            if what == "training" and ws.read_state("k")["epochs_trained"] >= float(epochs):
                break
            continue
        p.send_signal(signal.SIGKILL)
        p.wait()
        counts[what] += 1
        steps, rows = check(ws, "k")
        _, rows = check(ws, "ing")
        print(
            f"kill {sum(counts.values()):>3} while {what:<9}: model loads at step {steps}, history {steps} rows, "
            f"ingest queue {rows} sources whole",
            flush=True,
        )
    while ws.read_state("k")["epochs_trained"] < float(epochs):
        r = subprocess.run(train_k(), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    check(ws, "k")
    a_, b_ = history(ws, "ref"), history(ws, "k")
    n = a_.sizes["step"]
    same = b_.sizes["step"] == n and (a_.loss.values == b_.loss.values).all()
    print(
        f"\n{sum(counts.values())} kills ({counts['training']} training or checkpointing, {counts['ingesting']} "
        f"ingesting) in {time.time() - t0:.0f} s; "
        f"every check held after every kill"
    )
    from crystalline_nb.history import events
    grew = [[e["step"] for e in events(h) if e["type"] == "growth"] for h in (a_, b_)]
    print(f"both grew from 2 to 3 layers at step {grew[0]} (reference) and {grew[1]} (killed)")
    same = same and grew[0] == grew[1] == grew[0][:1] and ws.info("k")["n_layer"] == 3
    print("resumed run equals the uninterrupted one, loss for loss:", "yes" if same else "NO")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
