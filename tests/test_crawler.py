"The crawler against a site this test serves on 127.0.0.1 (and a second host on 127.0.0.2 that must never be visited)."
import http.server, json, signal, subprocess, sys, threading, time
import pytest
from crystalline_nb.workspace import Workspace
from crystalline_nb.crawler import Crawler, CrawlSettings, normalize_url
from crystalline_nb.trainer import Trainer
from conftest import BIN, cllm_env

ARTICLE = ("<html><head><title>{t}</title></head><body><nav><a href='/'>Home</a> | Menu</nav><article><h1>{t}</h1><p>"
           + "The clock lattice has rings of twelve, sixty, sixty and one hundred positions; {t} tells the rest. " * 6
           + "</p>{links}</article><footer>footer text</footer></body></html>")


def make_site(other_port):
    log = []
    pages = {
        "/robots.txt": (200, "text/plain", "User-agent: *\nDisallow: /private/\nCrawl-delay: 0.4\n"),
        "/": (
            200,
            "text/html",
            "<html><body>"
            + " ".join(
                f'<a href="{h}">{h}</a>'
                for h in [
                    "/a",
                    "/a#frag",
                    "/a?utm_source=x&fbclid=y",
                    "/b",
                    "/private/secret",
                    "/loop1",
                    "/slow",
                    "/huge",
                    "/binary",
                    "/missing",
                    "/error",
                    "/short",
                    "/redir",
                    f"http://127.0.0.2:{other_port}/other",
                    "mailto:someone@example.org",
                    "ftp://127.0.0.1/file",
                ]
            )
            + "</body></html>",
        ),
        "/a": (200, "text/html; charset=utf-8", ARTICLE.format(t="Article A", links="")),
        "/b": (200, "text/html", ARTICLE.format(t="Article B", links='<a href="/c">c</a>')),
        "/c": (200, "text/html", ARTICLE.format(t="Article C", links='<a href="/d">d</a>')),
        "/d": (200, "text/html", ARTICLE.format(t="Article D (too deep)", links="")),
        "/private/secret": (200, "text/html", ARTICLE.format(t="Secret", links="")),
        "/short": (200, "text/html", "<html><body><article><p>Too short.</p></article></body></html>"),
        "/binary": (200, "image/png", "\x89PNG\r\n\x1a\n" + "x" * 100),
        "/error": (500, "text/html", "oops"),
    }
    redirects = {"/loop1": "/loop2", "/loop2": "/loop1", "/redir": "/b"}

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            log.append(dict(path=self.path, t=time.monotonic(), ua=self.headers.get("User-Agent", "")))
            if self.path in redirects:
                self.send_response(302)
                self.send_header("Location", redirects[self.path])
                self.end_headers()
                return
            if self.path == "/slow":
                time.sleep(3)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.end_headers()
                    self.wfile.write(ARTICLE.format(t="slow", links="").encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return
            if self.path == "/huge":                       # no Content-Length: the cap must work while streaming
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                try:
                    for _ in range(300):
                        self.wfile.write(b"<p>" + b"x" * 10000 + b"</p>")
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return
            code, ctype, body = pages.get(self.path, (404, "text/html", "not found"))
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.end_headers()
            self.wfile.write(body.encode("latin-1"))
        def log_message(self, *a): pass
    return H, log


@pytest.fixture
def site():
    other_log = []
    class Other(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            other_log.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(ARTICLE.format(t="other host", links="").encode())
        def log_message(self, *a): pass
    other = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Other)
    H, log = make_site(other.server_address[1])
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    for s in (srv, other):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", log, other_log
    srv.shutdown()
    other.shutdown()
    srv.server_close()
    other.server_close()


@pytest.fixture
def ws(home):
    w = Workspace(home)
    w.create("web", preset_name="nano", d_model=32, n_head=2, d_ff=64, max_seq_len=64)
    return w


def paths(log): return [e["path"] for e in log if e["path"] != "/robots.txt"]


def test_polite_crawl(ws, site):
    base, log, other_log = site
    rep = Crawler(ws, "web", delay=0.05, depth=2, timeout=1.0, max_bytes=1_000_000, max_pages=100).run([base + "/"])
    fr = {r["url"].replace(base, ""): r for r in Crawler(ws, "web").frontier().rows()}
    got = paths(log)
    assert "/private/secret" not in got and fr["/private/secret"]["status"] == "disallowed"
    assert fr["/loop1"]["status"] == "failed" and fr["/loop1"]["reason"] == "redirect loop"
    assert got.count("/loop1") == 1 and got.count("/loop2") == 1
    assert fr["/slow"]["reason"] == "timed out"
    assert fr["/huge"]["status"] == "failed" and "larger than max-bytes" in fr["/huge"]["reason"]
    assert fr["/binary"]["status"] == "skipped" and "content type image/png is not text" in fr["/binary"]["reason"]
    assert fr["/missing"]["http"] == 404 and fr["/missing"]["status"] == "failed"
    assert fr["/error"]["http"] == 500
    assert fr["/short"]["status"] == "skipped" and "too short" in fr["/short"]["reason"]
    assert {fr["/redir"]["status"], fr["/b"]["status"]} == {"queued", "duplicate"}         # the same text reached twice
    assert fr["/c"]["status"] == "queued" and "/d" not in got and fr["/d"]["depth"] == 3     # depth 2 stops before /d
    assert rep.reason.startswith("depth limit reached (1 links in scope wait beyond depth 2")
    assert other_log == [] and [fr[u]["status"] for u in fr if "127.0.0.2" in u] == ["pending"]  # stored, not fetched
    assert got.count("/a") == 1  # fragments and tracking parameters normalised
    assert all("crystalline_nb" in e["ua"] for e in log)
    ts = [e["t"] for e in log]
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    assert min(gaps) >= 0.4 - 0.02, f"requests {min(gaps):.3f} s apart; robots.txt asks for 0.4"
    sources = {r["source"].replace(base, "") for r in ws.queue("web").rows()}
    assert sources in ({"/a", "/b", "/c"}, {"/a", "/redir", "/c"})
    text = ws.queue("web").tokenizer.decode(ws.queue("web").corpus().read(0, 400).tolist())
    assert "The clock lattice" in text and "Menu" not in text                               # main text, not navigation
    assert rep.queued == 3 and rep.disallowed == 1


def test_resumed_crawl_fetches_nothing_twice_and_trains(ws, site):
    base, log, _ = site
    r1 = Crawler(ws, "web", delay=0.01, timeout=1.0, max_bytes=1_000_000, max_pages=3).run([base + "/"])
    assert r1.reason == "max-pages reached (3)" and r1.fetched + r1.disallowed == 3
    r2 = Crawler(ws, "web", delay=0.01, timeout=1.0, max_bytes=1_000_000, max_pages=100).run([base + "/"])
    got = paths(log)
    assert len(got) == len(set(got)), sorted(p for p in got if got.count(p) > 1)
    assert r2.queued + r1.queued == 3
    assert len(list(ws.path("web").glob("queue/shards/*.bin"))) == 2  # pages batched, one shard a run
    r3 = Crawler(ws, "web", delay=0.01, timeout=1.0, max_pages=100).run([base + "/"])
    assert r3.fetched == 0 and r3.reason.startswith("depth limit reached")
    r3 = Crawler(ws, "web", delay=0.01, timeout=1.0, max_pages=100, depth=5).run([base + "/"])
    assert r3.fetched == 1 and r3.queued == 1 and r3.reason.startswith("no more pages in scope")  # deeper: /d
    r4 = Crawler(ws, "web", delay=0.01, timeout=1.0, max_pages=100, refresh=True, depth=0).run([base + "/"])
    assert r4.fetched == 1  # --refresh fetches the start URL again
    Trainer(ws, "web", target_epochs=1, batch_size=4, seq_len=32, threads=1).run()
    led = ws.ledger("web")
    assert {r["kind"] for r in led} == {"url"} and all(r["epochs"] == 1.0 for r in led)


def test_stop_returns_promptly(ws, site):
    base, log, _ = site
    cr = Crawler(ws, "web", delay=300.0, timeout=5.0, max_pages=100)  # stopped in its wait before the next request
    out = {}
    th = threading.Thread(target=lambda: out.update(rep=cr.run([base + "/"])))
    th.start()
    while not log:  # robots.txt fetched: the crawler now waits 300 s before the start page
        time.sleep(0.02)
    cr.stop()
    th.join(120)
    assert not th.is_alive() and paths(log) == []  # well before the 300 s delay was out
    assert out["rep"].reason == "stopped"
    assert Crawler(ws, "web").frontier().counts().get("pending", 0) > 0  # the rest waits for a resume


def test_crawling_while_training_joins_at_the_next_epoch(ws, site):
    base, log, _ = site
    ws.queue("web").add_text("Seed text about clocks and lattices. " * 30, source="seed")
    tr = Trainer(ws, "web", target_epochs=400, batch_size=2, seq_len=32, threads=1, save_every=10)
    th = threading.Thread(target=tr.run)
    th.start()
    rep = Crawler(ws, "web", delay=0.01, timeout=1.0, max_bytes=1_000_000, max_pages=100).run([base + "/"])
    assert rep.queued == 3
    time.sleep(1.5)
    tr.stop()
    th.join(30)
    st = ws.read_state("web")
    rows = st["epoch_rows"]
    assert rows[0] == 1 and rows[-1] == 4, rows  # later epochs include the crawled pages
    assert all(r["epochs"] >= 1 for r in ws.ledger("web"))


def test_cli_crawl(ws, site, capsys):
    from crystalline_nb.cli import main
    base, log, _ = site
    env = cllm_env(ws.home)
    r = subprocess.run(
        [str(BIN / "cllm"), "crawl", "web", base + "/a", "--depth", "0", "--delay", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "queued" in r.stdout and "1 fetched: 1 queued" in r.stdout
    for args, msg in [
        (["ftp://x/y"], "only http and https"),
        (["http://127.0.0.1:1/", "--max-pages", "0"], "max-pages must be"),
        (["http://127.0.0.1:1/", "--delay", "-1"], "delay must be"),
        (["file:///etc/passwd"], "only http and https"),
    ]:
        code = main(["--home", str(ws.home), "crawl", "web", *args])                  # in-process: the same entry point
        err = capsys.readouterr().err
        assert code == 1 and msg in err and len(err.strip().splitlines()) == 1, err


def test_cli_ctrl_c(ws, site):
    base, log, _ = site
    p = subprocess.Popen([str(BIN / "cllm"), "crawl", "web", base + "/", "--delay", "300"], env=cllm_env(ws.home),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not log and p.poll() is None:  # robots.txt fetched: the crawl now waits 300 s before the start page
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)  # well before the 300 s delay was out
    assert p.returncode == 130 and "stopped" in out


def test_panel_crawl(ws, site):
    from crystalline_nb.panel import ControlPanel
    base, log, _ = site
    panel = ControlPanel(ws.home)
    panel.data.crawl_url.value, panel.data.crawl_delay.value = base + "/", 0.0
    panel.data.start_crawl()
    panel.wait(120)
    assert (
        "depth limit reached" in panel.data.crawl_status.value and "4 queued" in panel.data.crawl_status.value
    ), panel.data.crawl_status.value
    assert len(ws.queue("web").rows()) == 4  # /a, /b, /c and /slow (15 s timeout here)
    status = panel.data.crawl_status.value  # the pages left out are listed, each with its reason
    assert "pages not queued, with the reasons" in status and "content type image/png is not text" in status
    assert "/short" in status and "too short" in status and "disallowed by robots.txt" in status
    assert "crawl web" in panel.cli.value
    panel.data.crawl_url.value = "ftp://nope"
    panel.data.start_crawl()
    assert "only http and https" in panel.message.value
