"""Generation speed with and without the KV cache, alternating rounds.

Usage: python bench/generate_speed.py [--quick] [--rounds R] [--against REV]
Greedy generation from a 16-token prompt with the micro preset (weights as initialised: speed does not
depend on them). Both paths produce the same tokens (checked). Each round times both paths back to back, in
turns (the cached path first in even rounds), after a warm-up of each. The figures are the median tokens per
second and the median and range of the per-round speed-ups, since this machine's noise moves one run by 2x.
Last, the operators one cached step dispatches (from the PyTorch profiler): a count that noise cannot move, since a
cached step of this small model costs more in dispatching than in arithmetic.
--against REV judges a change: each round runs this measurement once in a fresh process with this tree's package
and once with the package of git revision REV (unpacked into a temporary folder), alternating which goes first,
and prints both sides' per-round speed-ups and the median ratio of this tree's to REV's.
"""
import argparse, io, json, os, subprocess, sys, tarfile, tempfile
import statistics, time
from pathlib import Path
import torch
from torch.profiler import profile
from common import parser
from crystalline_nb.model import CLLM, KVCache
from crystalline_nb.config import preset
from crystalline_nb.generate import generate_ids


def timed(m, prompt, n, cache):
    t0 = time.perf_counter()
    ids = list(generate_ids(m, prompt, max_tokens=n, temperature=0, use_cache=cache))
    return n / (time.perf_counter() - t0), ids


def step_operators(m, prompt):
    "Operators (all, and those that compute rather than make views) one cached single-token step dispatches."
    views = {"aten::as_strided", "aten::view", "aten::transpose", "aten::slice", "aten::t", "aten::expand",
             "aten::unflatten", "aten::flatten", "aten::reshape", "aten::select", "aten::resolve_conj",
             "aten::empty", "aten::empty_like", "aten::empty_strided", "aten::unsqueeze", "aten::split",
             "aten::narrow", "aten::alias", "aten::_unsafe_view"}
    with torch.inference_mode():
        cache = KVCache(m.cfg.n_layer, capacity=m.cfg.max_seq_len)
        m(torch.tensor([prompt]), cache=cache)
        with profile() as p:
            m(torch.tensor([[prompt[-1]]]), cache=cache)
    ev = p.key_averages()
    return sum(e.count for e in ev), sum(e.count for e in ev if e.key not in views)


def one_round(n: int) -> dict:
    "One round at `n` new tokens in this process (both paths, cached first): tokens/s of each and the speed-up."
    torch.manual_seed(0)
    m = CLLM(preset("micro")).eval()
    prompt = list(range(3, 19))
    for cache in (True, False):
        timed(m, prompt, 16, cache)  # warm-up
    (c, ids_c), (u, ids_u) = timed(m, prompt, n, True), timed(m, prompt, n, False)
    assert ids_c == ids_u, "cache and no-cache disagree"
    return dict(cached=c, uncached=u, speedup=c / u)


def against(rev: str, rounds: int, lengths) -> None:
    "This tree's package against revision `rev`'s, a fresh process each, alternating (see the usage)."
    root = Path(__file__).resolve().parent.parent
    tar = subprocess.run(["git", "-C", str(root), "archive", rev, "crystalline_nb"], capture_output=True)
    if tar.returncode != 0:
        raise SystemExit(f"error: git archive {rev}: {tar.stderr.decode().strip()}")
    other = Path(tempfile.mkdtemp())
    tarfile.open(fileobj=io.BytesIO(tar.stdout)).extractall(other)
    sides = {"this tree": str(root), rev: str(other)}
    print(f"this tree against {rev}, {rounds} alternating rounds, a fresh process each\n")
    for n in lengths:
        got = {k: [] for k in sides}
        for r in range(rounds):
            for k in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
                env = {**os.environ, "PYTHONPATH": sides[k]}
                out = subprocess.run([sys.executable, __file__, "--one", str(n)], env=env, capture_output=True,
                                     text=True, check=True, cwd=other)
                got[k].append(json.loads(out.stdout.strip().splitlines()[-1]))
        for k, v in got.items():
            sp = [x["speedup"] for x in v]
            print(f"{n:>4} tokens, {k:<12} cached {statistics.median(x['cached'] for x in v):7.1f} tok/s, uncached "
                  f"{statistics.median(x['uncached'] for x in v):7.1f}, speed-up x{statistics.median(sp):.1f} "
                  f"(rounds {', '.join(f'x{x:.1f}' for x in sp)})")
        a, b = (got[k] for k in sides)
        ratio = statistics.median(x["cached"] / y["cached"] for x, y in zip(a, b))
        print(f"{n:>4} tokens: cached tok/s of this tree / {rev}, median of the rounds: x{ratio:.2f}\n")


def main():
    ap = parser(__doc__)
    ap.add_argument("--rounds", type=int, default=0, help="rounds per length (default 5, 3 with --quick)")
    ap.add_argument("--against", default=None, help="a git revision to compare this tree with (see the usage)")
    ap.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)  # one round in this process
    a = ap.parse_args()
    if a.one:
        return print(json.dumps(one_round(a.one)))
    rounds = a.rounds or (3 if a.quick else 5)
    if a.against:
        return against(a.against, rounds, (64, 256) if a.quick else (64, 256, 400))
    torch.manual_seed(0)
    m = CLLM(preset("micro")).eval()
    prompt = list(range(3, 19))
    print(f"micro preset, {m.n_params:,} parameters, {torch.get_num_threads()} threads, {rounds} rounds\n")
    for cache in (True, False):
        timed(m, prompt, 16, cache)  # warm-up
    for n in ((64, 256) if a.quick else (64, 256, 400)):
        speed = {True: [], False: []}
        ratios = []
        for r in range(rounds):
            got = {}
            for cache in ((True, False) if r % 2 == 0 else (False, True)):
                got[cache] = timed(m, prompt, n, cache)
                speed[cache].append(got[cache][0])
            assert got[True][1] == got[False][1], "cache and no-cache disagree"
            ratios.append(got[True][0] / got[False][0])
        med = statistics.median
        print(f"{n:>4} tokens: with KV cache {med(speed[True]):8.1f} tok/s, without {med(speed[False]):8.1f} tok/s, "
              f"speed-up x{med(ratios):.1f} (x{min(ratios):.1f}-x{max(ratios):.1f})")
    n_all, n_compute = step_operators(m, prompt)
    print(f"\none cached step dispatches {n_all} operators, {n_compute} of them not views or allocations")


if __name__ == "__main__":
    main()
