"""Several processes with torchrun + DDP (gloo on CPU): equal to one process, resumable across world sizes, fail-fast,
stoppable."""

import json, os, signal, subprocess, sys, time
import numpy as np
import pytest
import torch
from crystalline_nb.workspace import Workspace
from crystalline_nb.trainer import Trainer
from crystalline_nb.distributed import run_distributed, launch_command
from crystalline_nb.history import history
from conftest import BIN, cllm_env

TEXT = "".join(
    f"Line {i}: the clock lattice has rings of twelve, sixty, sixty and one hundred positions.\n" for i in range(200)
)
KW = dict(seq_len=32, lr=3e-3, warmup=5, target_epochs=5, save_every=5)


def make(ws, name):
    ws.create(name, preset_name="nano", d_model=32, n_head=2, d_ff=64, max_seq_len=64)
    ws.queue(name).add_text(TEXT, source="lines")


def ddp(ws, name, steps, nproc=2, batch=8):
    r = run_distributed(ws.home, name, nproc, capture=True, run={"max_steps": steps}, batch_size=batch, threads=1, **KW)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def single(ws, name, steps, batch=8):
    return Trainer(ws, name, batch_size=batch, threads=1, **KW).run(max_steps=steps)


def losses(ws, name): return history(ws, name).loss.values


@pytest.fixture
def ws(home):
    w = Workspace(home)
    for n in ("one", "two", "a", "b"):
        make(w, n)
    return w


def same_cursor(a: dict, b: dict) -> bool:
    "The same place in the data; the epoch's running loss may differ in its last bits (summation order)."
    exact = lambda d: {k: v for k, v in d.items() if k != "loss_sum"}
    return exact(a) == exact(b) and abs(a.get("loss_sum", 0) - b.get("loss_sum", 0)) <= 1e-5 * max(
        1.0, a.get("loss_sum", 0)
    )


def test_two_processes_equal_one(ws):
    single(ws, "one", 20)
    ddp(ws, "two", 20)
    a, b = losses(ws, "one"), losses(ws, "two")
    assert len(a) == len(b) == 20
    assert np.abs(a - b).max() < 1e-4, np.abs(a - b).max()
    sa, sb = ws.read_state("one"), ws.read_state("two")
    assert sa["tokens_seen"] == sb["tokens_seen"] and same_cursor(sa["data"], sb["data"])
    wa, wb = ws.load("one").model.state_dict(), ws.load("two").model.state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-4) for k in wa)
    print(f"largest loss difference, batch 8 in 2 processes against 1: {np.abs(a - b).max():.2e}")


def test_a_batch_the_processes_do_not_divide(ws):
    "Batch 8 in 3 processes (3 + 3 + 2 windows and one empty one) trains the model that one process trains."
    single(ws, "one", 6)
    r = ddp(ws, "two", 6, nproc=3)
    assert "batch 8 x 32 (global: 3 windows in each of 3 processes, 1 empty window in the last share)" in r.stderr
    assert np.abs(losses(ws, "one") - losses(ws, "two")).max() < 1e-4


def test_resume_across_world_sizes(ws):
    single(ws, "one", 20)
    ddp(ws, "a", 10)
    single(ws, "a", 10)          # 2 processes, then 1
    single(ws, "b", 10)
    ddp(ws, "b", 10)          # 1 process, then 2
    ref = losses(ws, "one")
    for n in ("a", "b"):
        l = losses(ws, n)
        assert len(l) == 20 and np.abs(l - ref).max() < 1e-4, (n, np.abs(l - ref).max())
        st = ws.read_state(n)
        assert st["tokens_seen"] == ws.read_state("one")["tokens_seen"] and same_cursor(
            st["data"], ws.read_state("one")["data"]
        )


def test_a_dead_rank_stops_the_job(ws):
    import psutil
    cmd = launch_command(
        ws.home, "two", 2, run={}, batch_size=4, threads=1, **{**KW, "target_epochs": 1000, "save_every": 2}
    )
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    hist = ws.path("two") / "history" / "steps.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not hist.exists() or len(hist.read_text().splitlines()) < 6):
        time.sleep(0.1)
    workers = [
        c
        for c in psutil.Process(p.pid).children(recursive=True)
        if "crystalline_nb.distributed" in " ".join(c.cmdline())
    ]
    assert len(workers) == 2
    workers[-1].send_signal(signal.SIGKILL)
    p.wait(600)  # the job ends (a rank waiting for the dead one forever would hang here)
    assert p.returncode != 0
    lm = ws.load("two")
    assert lm.state["steps"] >= 2 and len(losses(ws, "two")) == lm.state["steps"]
    single(ws, "two", 3)                                                        # resumes from the last checkpoint
    assert ws.read_state("two")["steps"] == lm.state["steps"] + 3


def test_cli_nproc_and_ctrl_c(ws):
    """The same `cllm train` command with --nproc 2 and without trains the same model: the batch size is global.
    (About 20 s: torchrun starts two processes, each importing torch, twice.)"""
    env = cllm_env(ws.home)
    same = ["--max-steps", "6", "--batch-size", "4", "--seq-len", "32", "--epochs", "5"]
    r1 = subprocess.run([str(BIN / "cllm"), "train", "a", *same], capture_output=True, text=True, env=env, timeout=300)
    r = subprocess.run(
        [str(BIN / "cllm"), "train", "one", "--nproc", "2", *same], capture_output=True, text=True, env=env, timeout=300
    )
    assert r1.returncode == 0 and r.returncode == 0, r.stderr[-3000:]
    assert "starting 2 processes with torchrun" in r.stdout and ws.read_state("one")["steps"] == 6
    assert "batch 4 x 32 (global: 2 windows in each of 2 processes)" in r.stderr and "batch 4 x 32," in r1.stderr
    assert np.abs(losses(ws, "one") - losses(ws, "a")).max() < 1e-4
    r = subprocess.run(
        [str(BIN / "cllm"), "train", "one", "--nproc", "2", "--seq-len", "999"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 1 and "seq-len must be between" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    p = subprocess.Popen(
        [
            str(BIN / "cllm"),
            "train",
            "two",
            "--nproc",
            "2",
            "--batch-size",
            "4",
            "--seq-len",
            "32",
            "--epochs",
            "1000",
            "--save-every",
            "100000",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    hist = ws.path("two") / "history" / "steps.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not hist.exists() or len(hist.read_text().splitlines()) < 5):
        time.sleep(0.1)
    os.killpg(p.pid, signal.SIGINT)                          # Ctrl-C reaches the whole process group
    out, err = p.communicate(timeout=600)
    assert p.returncode == 130, (p.returncode, err[-2000:])
    st = ws.read_state("two")
    assert st["steps"] >= 4 and len(losses(ws, "two")) == st["steps"]        # the stop checkpointed


def test_panel_with_two_processes(ws):
    from crystalline_nb.panel import ControlPanel
    panel = ControlPanel(ws.home)
    panel.model.value = "one"
    panel.train.batch.value, panel.train.seq.value, panel.train.epochs.value, panel.train.nproc.value = 4, 32, 2, 2
    assert "--nproc 2" in panel.cli.value
    panel.train.start()
    hist = ws.path("one") / "history" / "steps.csv"
    deadline = time.time() + 120
    while time.time() < deadline and len(panel.train.plot.live["y"]) < 3:
        time.sleep(0.2)
    assert len(panel.train.plot.live["y"]) >= 3  # the plot follows the run's history
    panel.train.stop()
    panel.wait(600)
    assert "stopped" in panel.message.value, panel.message.value
    st = ws.read_state("one")
    assert st["steps"] >= 3 and len(losses(ws, "one")) == st["steps"] and not panel.train.start_btn.disabled


def test_two_nodes_meet_and_train_and_a_missing_peer_is_said_in_one_line(ws):
    """Two `cllm train --nnodes 2` commands on this machine (storage shared) train one model; a node alone says why.
    (About 20 s: four torchrun launches, two of which wait out a short --peer-timeout.)"""
    from crystalline_nb.core import free_port
    env, port = cllm_env(ws.home), free_port()
    node = lambda rank, *extra: subprocess.Popen(
        [str(BIN / "cllm"), "train", "two", "--nnodes", "2", "--node-rank", str(rank), "--master-port", str(port),
         "--max-steps", "4", "--batch-size", "4", "--seq-len", "32", "--epochs", "5", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    nodes = [node(0), node(1)]
    outs = [p.communicate(timeout=300) for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    assert f"node 0 of 2, meeting at 127.0.0.1:{port}" in outs[0][0] and ws.read_state("two")["steps"] == 4
    assert "global: 2 windows in each of 2 processes" in outs[0][1]
    port = free_port()
    alone = node(0, "--peer-timeout", "2").communicate(timeout=300)[1]
    assert alone.startswith(f"error: node 0 waited 2 s at 127.0.0.1:{port} for the other nodes and 0 of 1 joined")
    assert len(alone.strip().splitlines()) == 1 and ws.read_state("two")["steps"] == 4  # no traceback; nothing changed
    lost = node(1, "--peer-timeout", "2").communicate(timeout=300)[1]
    assert lost.strip().splitlines() == [
        f"error: node 1 could not reach node 0 at 127.0.0.1:{port} within 2 s: start the same command with "
        "--node-rank 0 on 127.0.0.1 first, and check that this machine reaches that address and port"]
    assert "Traceback" in (ws.path("two") / "torchrun.log").read_text()  # what was held back is kept
