"""Concurrency: files are ingested and a local site is crawled into a model's queue while a separate process
trains that model. No error, no lost data, and the new data joins at the next epoch.

Usage: python bench/concurrency.py [--quick] [--seconds S]
The site is served on 127.0.0.1 by this script. Training is stopped with Ctrl-C (SIGINT) at the end and must
exit through its graceful stop (status 130) with a checkpoint.
"""
import http.server, json, signal, subprocess, threading, tempfile, time
from pathlib import Path
from common import parser, corpus_text, BIN
from crystalline_nb.workspace import Workspace
from crystalline_nb.crawler import Crawler


def site(n_pages):
    words = corpus_text(400_000)
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/robots.txt":
                body, ct = "User-agent: *\nAllow: /\n", "text/plain"
            else:
                i = int(self.path.strip("/") or 0)
                links = " ".join(f'<a href="/{j}">{j}</a>' for j in (i + 1, i + 2) if j < n_pages)
                body, ct = (
                    f"<html><body><article><h1>Page {i}</h1><p>{words[i * 3000:(i + 1) * 3000]}</p>{links}"
                    "</article></body></html>",
                    "text/html",
                )
            self.send_response(200)
            self.send_header("Content-Type", ct)
            self.end_headers()
            self.wfile.write(body.encode())
        def log_message(self, *a): pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main():
    ap = parser(__doc__)
    ap.add_argument("--seconds", type=float, default=None)
    a = ap.parse_args()
    secs = a.seconds or (30 if a.quick else 180)
    home = Path(tempfile.mkdtemp())
    ws = Workspace(home)
    ws.create("m", preset_name="nano", d_model=32, n_head=2, d_ff=64, max_seq_len=64)
    ws.queue("m").add_text(corpus_text(30_000), source="start")
    tr = subprocess.Popen(
        [
            str(BIN / "cllm"),
            "--home",
            str(home),
            "train",
            "m",
            "--epochs",
            "100000",
            "--batch-size",
            "8",
            "--seq-len",
            "32",
            "--threads",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    srv = site(200)
    cr = Crawler(ws, "m", delay=0.3, depth=100, max_pages=10**6)
    crawl = threading.Thread(target=lambda: cr.run([f"http://127.0.0.1:{srv.server_address[1]}/0"]))
    crawl.start()
    drop = home / "drops"
    drop.mkdir()
    t0, n_files, text = time.time(), 0, corpus_text(2_000_000)
    while time.time() - t0 < secs:
        f = drop / f"f{n_files:04d}.txt"
        f.write_text(text[n_files * 5000:(n_files + 1) * 5000] + f"\nfile {n_files}\n")
        rep = ws.queue("m").add_paths([f])
        assert len(rep.added) == 1, rep.summary()
        n_files += 1
        time.sleep(0.5)
    cr.stop()
    crawl.join(30)
    tr.send_signal(signal.SIGINT)
    out, err = tr.communicate(timeout=60)
    srv.shutdown()
    st = ws.read_state("m")
    led = ws.ledger("m")
    files = sum(1 for r in led if r["kind"] == "file")
    pages = sum(1 for r in led if r["kind"] == "url")
    er = st["epoch_rows"]
    errors = [l for l in err.splitlines() if l.startswith("error")]
    print(
        f"{secs:.0f} s: {files} files ingested and {pages} pages crawled while training ran {st['steps']} steps / "
        f"{st['epochs_trained']:.1f} epochs"
    )
    print(
        f"sources per epoch (first, last): {er[:3]} ... {er[-3:]} "
        f"(never decreasing: {all(a <= b for a, b in zip(er, er[1:]))})"
    )
    print(f"trainer exit status {tr.returncode} (130 = graceful stop with checkpoint), error lines: {len(errors)}")
    ok = (
        tr.returncode == 130
        and not errors
        and files == n_files
        and all(a <= b for a, b in zip(er, er[1:]))
        and er[-1] > er[0]
        and led[0]["epochs"] >= led[-1]["epochs"]
    )
    print("no error, no lost data, new data joined at later epochs:", "yes" if ok else "NO")
    if not ok:
        print(err[-2000:])
        raise SystemExit(1)


if __name__ == "__main__":
    main()
