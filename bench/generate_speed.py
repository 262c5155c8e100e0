"""Generation speed with and without the KV cache.

Usage: python bench/generate_speed.py [--quick]
Greedy generation from a 16-token prompt with the micro preset (weights as initialised: speed does not
depend on them). Both paths produce the same tokens (checked); the figure is tokens per second.
"""
import time
import torch
from common import parser
from crystalline_nb.model import CLLM
from crystalline_nb.config import preset
from crystalline_nb.generate import generate_ids


def main():
    a = parser(__doc__).parse_args()
    torch.manual_seed(0)
    m = CLLM(preset("micro")).eval()
    prompt = list(range(3, 19))
    print(f"micro preset, {m.n_params:,} parameters, {torch.get_num_threads()} threads\n")
    for n in ((64, 256) if a.quick else (64, 256, 400)):
        res = {}
        for cache in (True, False):
            t0 = time.perf_counter()
            ids = list(generate_ids(m, prompt, max_tokens=n, temperature=0, use_cache=cache))
            res[cache] = (n / (time.perf_counter() - t0), ids)
        assert res[True][1] == res[False][1], "cache and no-cache disagree"
        print(f"{n:>4} tokens: with KV cache {res[True][0]:8.1f} tok/s, without {res[False][0]:8.1f} tok/s, speed-up x{res[True][0] / res[False][0]:.1f}")


if __name__ == "__main__":
    main()
