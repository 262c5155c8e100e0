"""The trainer as users rely on it: the loss falls, epochs continue, resume is exact, kills lose nothing, growth keeps
the loss."""

import json, math, os, random, signal, subprocess, sys, textwrap, threading, time
from pathlib import Path
import numpy as np
import pytest
import torch
from crystalline_nb.workspace import Workspace
from crystalline_nb.trainer import Trainer, TrainingError
from crystalline_nb.history import history, read_history, events
import crystalline_nb.trainer as trainer_mod
from conftest import BIN, cllm_env

TEXT = "".join(
    f"Line {i}: the clock lattice has rings of twelve, sixty, sixty and one hundred positions.\n" for i in range(120)
)
SETTINGS = dict(batch_size=4, seq_len=32, lr=3e-3, warmup=5, threads=1)


def make(home, name="m", text=TEXT, **kw):
    ws = Workspace(home)
    ws.create(name, preset_name="nano", d_model=32, n_head=2, d_ff=64, max_seq_len=64, **kw)
    ws.queue(name).add_text(text, source="lines")
    return ws


RUN = textwrap.dedent("""
    import sys, json
    from crystalline_nb.workspace import Workspace
    from crystalline_nb.trainer import Trainer
    home, name, kw, run = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
    print(json.dumps(Trainer(Workspace(home), name, **kw).run(**run)))
""")


def run_proc(home, name, kw, run=None, **popen):
    return subprocess.run([sys.executable, "-c", RUN, str(home), name, json.dumps(kw), json.dumps(run or {})],
                          capture_output=True, text=True, timeout=600, **popen)


def losses(ws, name):
    ds = history(ws, name)
    assert len(set(ds.step.values.tolist())) == ds.sizes["step"]
    return ds.step.values.tolist(), ds.loss.values.tolist()


def test_loss_falls_and_epochs_persist(home):
    ws = make(home)
    s = Trainer(ws, "m", target_epochs=2, **SETTINGS).run()
    assert s["reason"] == "target" and s["last_loss"] < 0.6 * s["first_loss"]
    st = ws.read_state("m")
    assert st["epochs_trained"] == 2.0 and st["target_epochs"] == 2.0 and st["steps"] == s["steps"]
    assert st["training"]["batch_size"] == 4 and st["training"]["lr"] == 3e-3          # settings persist ...
    s2 = Trainer(ws, "m", target_epochs=3).run()  # ... and are the next run's defaults
    assert ws.read_state("m")["epochs_trained"] == 3.0
    assert s2["steps"] == s["steps"] // 2 or abs(s2["steps"] - s["steps"] / 2) <= 1     # one more epoch, not three
    with pytest.raises(TrainingError, match="below the 3.000 epochs already trained"):
        Trainer(ws, "m", target_epochs=2)
    ds = history(ws, "m")
    assert ds.sizes["epoch"] == 3 and np.isfinite(ds.train_loss.values).all()
    assert (ds.loss.attrs["units"], ds.tokens_per_s.attrs["units"], ds.epoch_tokens.attrs["units"]) == (
        "nats/token", "tokens/s", "tokens")                                            # units, datetimes, integers
    assert ds.time.dtype == "datetime64[ns]" and ds.epoch_time.values[0] > np.datetime64("2020-01-01")
    assert {ds[v].dtype.name for v in ("tokens", "batch_size", "seq_len", "epoch_step", "n_rows")} == {"int64"}
    assert ws.ledger("m")[0]["epochs"] == 3.0 and ws.ledger("m")[0]["status"] == "trained"


def test_exact_resume_in_a_new_process(home, tmp_path):
    "A run stopped and resumed in a new process equals an uninterrupted one (about 10 s: three processes)."
    ws = make(home, "a")
    make(home, "b")
    kw = dict(target_epochs=2, **SETTINGS)
    r = run_proc(home, "a", kw, dict(max_steps=24))
    assert r.returncode == 0, r.stderr
    r = run_proc(home, "b", kw, dict(max_steps=12))
    assert r.returncode == 0, r.stderr
    r = run_proc(home, "b", kw, dict(max_steps=12))
    assert r.returncode == 0, r.stderr
    sa, la = losses(ws, "a")
    sb, lb = losses(ws, "b")
    assert sa == sb == list(range(1, 25))
    assert la == lb                                                                     # bit-identical on CPU
    a, b = ws.load("a").model.state_dict(), ws.load("b").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_batch_and_seq_len_change_keep_the_epoch_position(home, monkeypatch):
    ws = make(home)
    seen = []
    real = trainer_mod.gather
    monkeypatch.setattr(trainer_mod, "gather", lambda c, runs: (seen.extend(runs), real(c, runs))[1])
    monkeypatch.setattr(Trainer, "validate", lambda self: None)                        # record training reads only
    Trainer(ws, "m", target_epochs=1, **SETTINGS).run(max_steps=5)
    Trainer(ws, "m", batch_size=3, seq_len=20).run(max_steps=4)
    Trainer(ws, "m", batch_size=5, seq_len=48, grad_accum=2).run()
    st = ws.read_state("m")
    assert st["epochs_trained"] == 1.0
    pos = np.concatenate([np.arange(s, s + n) for s, n in seen])
    n = len(ws.queue("m").corpus())
    plan_val = set()
    from crystalline_nb.epochs import EpochPlan
    p = EpochPlan(n, 32, 0, 0, holdout=ws.read_state("m")["holdout"])
    for s, k in zip(p.val_starts, p.val_lens):
        plan_val.update(range(s, s + k))
    assert sorted(pos.tolist()) == sorted(set(range(n - 1)) - plan_val)  # every training position exactly once


def test_data_added_during_an_epoch_joins_at_the_next(home):
    ws = make(home)
    Trainer(ws, "m", target_epochs=2, **SETTINGS).run(max_steps=3)
    ws.queue("m").add_text("fresh data " * 200, source="late")
    assert ws.ledger("m")[1]["status"] == "pending"
    Trainer(ws, "m").run()
    st = ws.read_state("m")
    assert st["epoch_rows"] == [1, 2]  # epoch 1 had one source, epoch 2 both
    led = ws.ledger("m")
    assert led[0]["epochs"] == 2.0 and led[1]["epochs"] == 1.0


def test_growth_keeps_the_loss_and_shrink_is_refused(home):
    ws = make(home)
    Trainer(ws, "m", target_epochs=1, **SETTINGS).run(max_steps=10)
    seen = []
    tr = Trainer(ws, "m", layers=4)
    assert tr.changes["transformed"] and "layers 2 -> 4" in tr.changes["transformed"][0]
    tr.subscribe(seen.append)
    tr.run(max_steps=2)
    g = [e for e in seen if e["type"] == "growth"][0]
    assert abs(g["loss_before"] - g["loss_after"]) < 1e-6
    assert ws.info("m")["n_layer"] == 4 and ws.load("m").model.cfg.n_layer == 4
    assert any(e["type"] == "growth" for e in events(history(ws, "m")))
    with pytest.raises(TrainingError, match="never shrink"):
        Trainer(ws, "m", layers=3)
    with pytest.raises(TrainingError, match="width 32 -> 64"):
        Trainer(ws, "m", arch=dict(d_model=64))


def test_stop_returns_promptly_with_a_checkpoint(home):
    ws = make(home, text=TEXT * 20)
    tr = Trainer(ws, "m", target_epochs=50, **SETTINGS)
    steps = []
    tr.subscribe(lambda e: steps.append(e["step"]) if e["type"] == "step" else None)
    out = {}
    th = threading.Thread(target=lambda: out.update(tr.run()))
    th.start()
    while len(steps) < 5:
        time.sleep(0.01)
    tr.stop()
    seen = len(steps)  # the step under way when stop() came is the last one (whatever the machine's speed)
    th.join(600)
    assert not th.is_alive() and out["reason"] == "stop" and out["total_steps"] <= seen + 1
    assert ws.read_state("m")["steps"] == out["total_steps"] >= 5


def test_less_data_than_one_batch_is_a_clear_error(home):
    ws = make(home, text="too little")
    tr = Trainer(ws, "m", **SETTINGS)
    events = []
    tr.subscribe(events.append)
    with pytest.raises(TrainingError, match=r"has 10 training tokens .* needs 128: add 118 more tokens"):
        tr.run()
    assert not [e for e in events if e["type"] == "step"]  # refused before any step


def test_nan_stops_without_touching_the_checkpoint(home, monkeypatch):
    ws = make(home)
    Trainer(ws, "m", target_epochs=2, **SETTINGS).run(max_steps=3)
    before = ws.load("m").model.state_dict()
    real = trainer_mod.F.cross_entropy
    calls = {"n": 0}
    def bad(*a, **k):
        calls["n"] += 1
        out = real(*a, **k)
        return out * float("nan") if calls["n"] > 2 else out
    monkeypatch.setattr(trainer_mod.F, "cross_entropy", bad)
    with pytest.raises(TrainingError, match="loss became NaN at step"):
        Trainer(ws, "m", save_every=1).run()
    monkeypatch.undo()
    after = ws.load("m")
    assert after.state["steps"] == 5
    assert all(torch.isfinite(v).all() for v in after.model.state_dict().values())
    Trainer(ws, "m").run(max_steps=1)                                                  # and it trains on afterwards


def test_sigkill_at_random_moments_loses_nothing(home):
    """Kill a training process many times mid-training; afterwards the losses equal those of an uninterrupted run.
    (About 30 s: each kill is followed by a fresh `cllm train` process, which imports torch.)"""
    ws = make(home, "ref")
    make(home, "k")
    kw = dict(target_epochs=3, save_every=2, **SETTINGS)
    r = run_proc(home, "ref", kw)
    assert r.returncode == 0, r.stderr
    ref_steps, ref_losses = losses(ws, "ref")
    rows = lambda: (
        len((ws.path("k") / "history" / "steps.csv").read_text().splitlines())
        if (ws.path("k") / "history" / "steps.csv").exists()
        else 0
    )
    rng = random.Random(0)
    kills = 0
    while kills < 8:
        before = rows()
        p = subprocess.Popen(
            [sys.executable, "-c", RUN, str(home), "k", json.dumps(kw), "{}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.time() + 120
        while p.poll() is None and rows() <= before and time.time() < deadline:
            time.sleep(0.02)   # wait until it trains
        time.sleep(rng.uniform(0.0, 0.6))  # then kill at a random moment
        if p.poll() is not None:
            break                                                            # it finished first
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
        lm = ws.load("k")  # loads after every kill
        steps, _ = losses(ws, "k")
        assert steps == list(range(1, lm.state["steps"] + 1))  # no duplicated or missing rows
    assert kills >= 5
    r = run_proc(home, "k", kw)
    assert r.returncode == 0, r.stderr
    steps, ls = losses(ws, "k")
    assert steps == ref_steps and ls == ref_losses
    raw = (ws.path("k") / "history" / "steps.csv").read_text().splitlines()[1:]
    assert [int(l.split(",")[2]) for l in raw] == ref_steps


def test_cli_train_history_and_errors(home):
    "`cllm train` and `cllm history` end to end, and each bad setting's one line (about 20 s: a process a command)."
    ws = make(home)
    env = cllm_env(home)
    def cllm(*a): return subprocess.run([str(BIN / "cllm"), *a], capture_output=True, text=True, env=env, timeout=300)
    r = cllm("train", "m", "--epochs", "1", "--batch-size", "4", "--seq-len", "32", "--lr", "3e-3", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "changed from this run on: batch size 8 -> 4; seq len 64 -> 32 (the epoch in progress" in r.stdout
    assert "target reached" in r.stderr
    r = cllm("train", "m")
    assert r.returncode == 0 and "already trained to its target" in r.stdout
    for args, msg in [(["--seq-len", "65"], "seq-len must be between 2 and the model's max_seq_len (64)"),
                      (["--epochs", "0.5"], "below the 1.000 epochs already trained"),
                      (["--layers", "1"], "never shrink"), (["--lr", "-1"], "lr must be in (0, 1]"),
                      (["--heads", "4"], "heads 2 -> 4"), (["--batch-size", "0"], "batch-size must be between"),
                      (["--beta2", "1"], "beta2 must be in (0, 1)")]:
        r = cllm("train", "m", *args)
        assert (
            r.returncode == 1
            and msg in r.stderr
            and len(r.stderr.strip().splitlines()) == 1
            and "Traceback" not in r.stderr
        ), (args, r.stderr)
    r = cllm("history", "m", "--format", "csv")
    assert r.returncode == 0 and r.stdout.splitlines()[0].startswith("time,epoch,step")
    data = json.loads(cllm("history", "m", "--format", "json").stdout)
    assert len(data["epochs"]) == 1 and data["steps"][-1]["step"] == ws.read_state("m")["steps"]
    assert "epoch    1" in cllm("history", "m").stdout


def test_cli_ctrl_c_stops_and_checkpoints(home):
    ws = make(home, text=TEXT * 20)
    p = subprocess.Popen(
        [
            str(BIN / "cllm"),
            "train",
            "m",
            "--epochs",
            "50",
            "--batch-size",
            "4",
            "--seq-len",
            "32",
            "--threads",
            "1",
            "--save-every",
            "100000",
        ],
        env=cllm_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.5)
        if (ws.path("m") / "history" / "steps.csv").exists() and len(
            (ws.path("m") / "history" / "steps.csv").read_text().splitlines()
        ) > 4:
            break
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 130, err
    assert "stopped" in err
    st = ws.read_state("m")
    assert st["steps"] >= 4 and losses(ws, "m")[0] == list(range(1, st["steps"] + 1))


def test_cli_not_enough_data_no_hang(home):
    make(home, text="tiny")
    r = subprocess.run(
        [str(BIN / "cllm"), "train", "m"], capture_output=True, text=True, env=cllm_env(home), timeout=60
    )
    assert r.returncode == 1 and "add" in r.stderr and "more tokens" in r.stderr


def test_reported_loss_is_the_optimised_one(home, monkeypatch):
    "The loss in events and history is the cross-entropy of the batch under the weights the step starts from."
    ws = make(home)
    real = Trainer._step
    checks = []
    def step(self, x, y):
        T = self.settings.seq_len
        n = len(x) // T * T
        with torch.no_grad():
            was = self.lm.model.training
            self.lm.model.eval()
            ref = torch.nn.functional.cross_entropy(self.lm.model(torch.from_numpy(x[:n].reshape(-1, T))).flatten(0, 1),
                                                    torch.from_numpy(y[:n].reshape(-1))).item() if n == len(x) else None
            self.lm.model.train(was)
        out = real(self, x, y)
        if ref is not None:
            checks.append((ref, out[0]))
        return out
    monkeypatch.setattr(Trainer, "_step", step)
    Trainer(ws, "m", target_epochs=1, **SETTINGS).run(max_steps=10)
    assert len(checks) == 10
    for ref, got in checks:
        assert abs(ref - got) < 1e-4
    _, ls = losses(ws, "m")
    assert ls == [got for _, got in checks]


def test_demo_runs_and_continues(home, tmp_path):
    "`cllm demo` twice: the second run continues the first (about 12 s: two processes that ingest and train)."
    env = {**cllm_env(home), "CLLM_DEMO_STEPS": "12"}  # a number of steps: the same test on a busy machine
    r1 = subprocess.run([str(BIN / "cllm"), "demo"], capture_output=True, text=True, env=env, timeout=300)
    assert r1.returncode == 0, r1.stderr
    assert (
        "sample before" in r1.stdout
        and "sample after" in r1.stdout
        and "Python standard library docstrings" in r1.stdout
    )
    ws = Workspace(home)
    st1 = ws.read_state("demo")
    assert st1["epochs_trained"] > 0 and st1["steps"] > 0
    r2 = subprocess.run([str(BIN / "cllm"), "demo"], capture_output=True, text=True, env=env, timeout=300)
    assert r2.returncode == 0, r2.stderr
    st2 = ws.read_state("demo")
    assert st2["epochs_trained"] > st1["epochs_trained"] and st2["steps"] > st1["steps"]
    assert "Python standard library docstrings" not in r2.stdout                        # corpus ingested once
    ds = history(ws, "demo")
    first_run = ds.loss.values[:st1["steps"]]
    second_run = ds.loss.values[st1["steps"]:]
    assert second_run[:5].mean() < first_run[:5].mean()  # the second run starts where the first ended
