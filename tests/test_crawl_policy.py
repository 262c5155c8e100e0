"""Where a crawl may go and how it fails: path scope, depth reruns, dead hosts, robots.txt redirects and errors, slow
servers, private addresses."""

import http.server, json, socket, subprocess, threading, time
from contextlib import contextmanager
import pytest
from crystalline_nb.workspace import Workspace
from crystalline_nb.crawler import Crawler, CrawlSettings, fetch
import crystalline_nb.crawler as crawler
from conftest import BIN, cllm_env

TEXT = "The clock lattice has rings of twelve, sixty, sixty and one hundred positions. " * 5


def page(title, links=()):
    return ("<html><body><article><h1>" + title + "</h1><p>" + title + ": " + TEXT + "</p>"
            + "".join(f'<a href="{h}">{h}</a> ' for h in links) + "</article></body></html>")


@contextmanager
def serve(routes, host="127.0.0.1"):
    "Serve `routes` {path: (status, headers, body) or callable(handler)} on `host`; yields (base URL, request log)."
    log = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            log.append(self.path)
            r = routes.get(self.path, (404, {"Content-Type": "text/plain"}, "not found"))
            if callable(r):
                return r(self)
            code, headers, body = r
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body.encode() if isinstance(body, str) else body)
        def log_message(self, *a): pass

    cls = type(
        "S", (http.server.ThreadingHTTPServer,), {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET}
    )
    srv = cls((host, 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    netloc = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{netloc}:{srv.server_address[1]}", log
    finally:
        srv.shutdown()
        srv.server_close()


HTML = {"Content-Type": "text/html"}


@pytest.fixture
def ws(home):
    w = Workspace(home)
    w.create("web", preset_name="nano", d_model=32, n_head=2, d_ff=64, max_seq_len=64)
    return w


def crawl(ws, urls, **kw):
    kw = dict(dict(delay=0, timeout=2.0, retry_base=0), **kw)
    return Crawler(ws, "web", **kw).run(urls)


def statuses(ws, base):
    return {r["url"].replace(base, ""): (r["status"], r["reason"]) for r in Crawler(ws, "web").frontier().rows()}


def test_a_crawl_stays_under_its_start_folder_and_a_wider_rerun_goes_on(ws):
    routes = {
        "/book/index.html": (200, HTML, page("Book", ["ch1.html", "sub/ch2.html", "/api/x.html", "/", "print.html"])),
        "/book/ch1.html": (200, HTML, page("Chapter one")),
        "/book/sub/ch2.html": (200, HTML, page("Chapter two")),
        "/book/print.html": (200, HTML, page("Print")),
        "/api/x.html": (200, HTML, page("API x")),
        "/": (200, HTML, page("Home")),
    }
    with serve(routes) as (base, log):
        rep = crawl(ws, [base + "/book/index.html"], exclude=("*/print.html",))
        assert sorted(log) == ["/book/ch1.html", "/book/index.html", "/book/sub/ch2.html", "/robots.txt"]
        assert rep.queued == 3 and rep.reason == "no more pages in scope"
        log.clear()
        rep = crawl(ws, [base + "/book/index.html"], scope="host")            # widened: the stored links are fetched
        assert sorted(log) == ["/", "/api/x.html", "/book/print.html", "/robots.txt"] and rep.queued == 3


def test_depth_limit_is_said_and_a_deeper_rerun_continues(ws):
    routes = {
        "/": (200, HTML, page("Zero", ["/1"])),
        "/1": (200, HTML, page("One", ["/2"])),
        "/2": (200, HTML, page("Two")),
    }
    with serve(routes) as (base, log):
        rep = crawl(ws, [base + "/"], depth=0)
        assert rep.queued == 1 and rep.reason.startswith("depth limit reached (1 links in scope wait beyond depth 0")
        rep = crawl(ws, [base + "/"], depth=1)
        assert rep.queued == 1 and "/1" in log and "/2" not in log and rep.reason.startswith("depth limit reached")
        rep = crawl(ws, [base + "/"], depth=2)
        assert rep.queued == 1 and rep.reason == "no more pages in scope"
        assert log.count("/") == 1


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def test_a_host_that_does_not_answer_is_a_failure_retried_later_not_a_refusal(ws):
    dead = f"http://127.0.0.1:{free_port()}"
    rep = crawl(ws, [dead + "/"], retry_base=3600)
    st = statuses(ws, dead)
    assert rep.failed == 1 and rep.disallowed == 0 and rep.retry == 1 and st["/"][0] == "failed"
    assert "robots.txt unreachable (connection failed" in st["/"][1] and "not crawled further" in rep.reason
    fr = Crawler(ws, "web").frontier()
    fr.add_links([dead + f"/p{i}" for i in range(5)], 1, dead + "/")
    with serve({"/": (200, HTML, page("Live"))}) as (base, log):
        rep = crawl(ws, [base + "/"], max_pages=3)                            # another site: the dead host's URLs wait
        assert rep.queued == 1 and rep.fetched == 1
    assert [r["status"] for r in Crawler(ws, "web").frontier().rows() if r["url"].startswith(dead + "/p")] == [
        "pending"
    ] * 5
    assert crawl(ws, [dead + "/"]).fetched == 0                                # not due yet: nothing tried
    fr.db.execute("UPDATE urls SET retry_at=0")
    fr.db.commit()
    rep = crawl(ws, [dead + "/"])
    assert rep.failed == 1 and Crawler(ws, "web").frontier().row(dead + "/")["attempts"] == 2


def test_a_rerun_before_a_retry_is_due_says_when_and_fails(ws, capsys):
    "The first run promised a retry; a rerun before it is due tries nothing, says from when, and exits 1."
    from crystalline_nb.cli import main
    dead = f"http://127.0.0.1:{free_port()}"
    assert crawl(ws, [dead + "/"], retry_base=3600).retry == 1
    again = crawl(ws, [dead + "/"])
    assert again.fetched == again.failed == 0 and again.waiting == 1
    assert "1 page wait to be tried again, the first from" in again.reason
    code = main(["--home", str(ws.home), "crawl", "web", dead + "/", "--delay", "0"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: nothing was fetched: 1 page wait to be tried again, the first from")


def test_robots_txt_redirects_are_followed_and_server_errors_mean_not_now(ws):
    routes = {"/robots.txt": (301, {"Location": "/real-robots.txt"}, ""),
              "/real-robots.txt": (200, {"Content-Type": "text/plain"}, "User-agent: *\nDisallow: /private/\n"),
              "/": (200, HTML, page("Home", ["/private/x", "/ok"])), "/ok": (200, HTML, page("Ok")),
              "/private/x": (200, HTML, page("Secret"))}
    with serve(routes) as (base, log):
        rep = crawl(ws, [base + "/"])
        assert rep.queued == 2 and rep.disallowed == 1 and "/private/x" not in log
    with serve({"/robots.txt": (503, {}, "busy"), "/": (200, HTML, page("Later"))}) as (base, log):
        rep = crawl(ws, [base + "/"])
        assert log == ["/robots.txt"] and rep.failed == 1 and rep.retry == 1 and rep.disallowed == 0


def drip(handler):
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html")
    handler.end_headers()
    try:
        for _ in range(100):
            handler.wfile.write(b"<p>drip</p>")
            handler.wfile.flush()
            time.sleep(0.4)
    except OSError:
        pass


def test_a_dripping_server_cannot_hold_a_request_past_its_deadline_or_a_stop():
    with serve({"/drip": drip}) as (base, _):
        t0 = time.monotonic()
        r = fetch(base + "/drip", CrawlSettings(timeout=1.0))
        assert r.error == "timed out" and r.body is None and time.monotonic() - t0 < 20  # the drip lasts 40 s
        stop = threading.Event()
        threading.Timer(0.5, stop.set).start()
        t0 = time.monotonic()
        r = fetch(base + "/drip", CrawlSettings(timeout=30.0), stop)
        assert r.error == "stopped" and time.monotonic() - t0 < 20  # against a timeout of 30 s


def test_untyped_bodies_are_sniffed_ipv6_literals_work_and_crawl_delay_is_capped(ws):
    routes = {"/robots.txt": (200, {"Content-Type": "text/plain"}, "User-agent: *\nCrawl-delay: 3600\n"),
              "/": (200, {}, page("Untyped HTML", ["/blob", "/plain"])), "/blob": (200, {}, bytes(range(256)) * 8),
              "/plain": (200, {}, "Plain   text  kept as written. " * 20)}
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
        host = "::1"
    except OSError:
        host = "127.0.0.1"
    with serve(routes, host) as (base, log):
        t0 = time.monotonic()
        rep = crawl(ws, [base + "/"], max_crawl_delay=0.3)
        st = statuses(ws, base)
        assert (
            st["/"][0] == "queued"
            and st["/plain"][0] == "queued"
            and st["/blob"] == ("skipped", "content type application/octet-stream is not text")
        )
        assert any("Crawl-delay" not in n and "3600 s" in n and "0.3 s" in n for n in rep.notes)
        assert 0.6 <= time.monotonic() - t0 < 600  # two waits of 0.3 s, not of 3600
    c = ws.queue("web").corpus()
    text = ws.queue("web").tokenizer.decode(c.read(0, len(c)).tolist())
    assert "Plain   text  kept as written." in text


def test_a_crawl_never_reaches_an_address_kind_it_did_not_start_on(ws, monkeypatch):
    real = crawler.resolve
    fake = {"inner.test": "10.0.0.5", "meta.test": "169.254.169.254"}
    monkeypatch.setattr(crawler, "resolve", lambda h, p: [(fake[h], p)] if h in fake else real(h, p))
    routes = {"/": (200, HTML, page("Home", ["http://inner.test/secret", "/hop"])),
              "/hop": (302, {"Location": "http://meta.test/latest/meta-data/"}, "")}
    with serve(routes) as (base, log):
        rep = crawl(ws, [base + "/"], include=("http://inner.test/*", "http://meta.test/*"))
        st = statuses(ws, base)
    assert st["http://inner.test/secret"] == (
        "skipped",
        "inner.test is a private address (10.0.0.5); a crawl that starts elsewhere does not reach it "
        "(allow_private / --allow-private)",
    )
    assert st["/hop"][0] == "skipped" and "link-local address (169.254.169.254)" in st["/hop"][1]
    assert rep.queued == 1


@pytest.mark.parametrize("ip,kind", [("100.100.100.200", "shared"), ("2002:a9fe:a9fe::1", "link-local"),
                                     ("fec0::1", "site-local"), ("64:ff9b::a9fe:a9fe", "link-local"),
                                     ("::ffff:10.1.2.3", "private"), ("2001:db8::1", "private")])
def test_what_is_not_global_is_refused_embedded_ipv4_included(ws, monkeypatch, ip, kind):
    "Shared, site-local, and IPv6 addresses that carry a non-global IPv4 one (6to4, NAT64, IPv4-mapped)."
    real = crawler.resolve
    monkeypatch.setattr(crawler, "resolve", lambda h, p: [(ip, p)] if h == "odd.test" else real(h, p))
    routes = {"/": (200, HTML, page("Home", ["http://odd.test/x"]))}
    with serve(routes) as (base, log):
        rep = crawl(ws, [base + "/"], include=("http://odd.test/*",), allow_private=False)
        st = statuses(ws, base)
    assert st["http://odd.test/x"][0] == "skipped" and f"a {kind} address ({ip})" in st["http://odd.test/x"][1]
    assert rep.queued == 1
    assert crawler.address_kind("2002:808:808::1") == crawler.address_kind("64:ff9b::808:808") == "public"


def test_cli_crawl_failures_exit_1_and_a_closed_pipe_is_quiet(ws, capsys):
    from crystalline_nb.cli import main
    env = cllm_env(ws.home)
    dead = f"http://127.0.0.1:{free_port()}/"
    code = main(["--home", str(ws.home), "crawl", "web", dead, "--delay", "0"])  # in-process: the same entry point
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: nothing was queued") and "connection failed" in err
    assert len(err.strip().splitlines()) == 1
    routes = {f"/p{i}": (200, HTML, page(f"Page {i}", [f"/p{i + 1}"])) for i in range(40)}
    with serve(routes) as (base, log):
        code = main(["--home", str(ws.home), "crawl", "web", base + "/missing", "--delay", "0"])
        assert code == 1 and "HTTP 404" in capsys.readouterr().err
        r = subprocess.run(
            f"'{BIN / 'cllm'}' crawl web {base}/p0 --delay 0 --depth 50 --max-pages 40 | head -2",
            shell=True,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert len(r.stdout.splitlines()) == 2 and r.stderr.startswith("note: the output was closed"), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    fr = {x["url"]: x["status"] for x in Crawler(ws, "web").frontier().rows()}
    queued = [u for u, s in fr.items() if s == "queued"]
    assert len(queued) == len(ws.queue("web").rows()) >= 1  # what was fetched before the pipe closed is kept


def test_a_page_reached_through_a_redirect_survives_a_crawl_killed_before_it_was_written(ws, monkeypatch):
    "The redirect's target is settled only once the page's text is written: a killed crawl fetches it again."
    from crystalline_nb.queue import Ingestion
    routes = {"/": (200, HTML, page("Home", ["/old"])), "/old": (301, {"Location": "/new"}, ""),
              "/new": (200, HTML, page("The page that moved"))}
    with serve(routes) as (base, log):
        with monkeypatch.context() as m:  # killed before its pages were written: nothing reached the queue
            m.setattr(Ingestion, "flush", lambda self: ([], []))
            m.setattr(Crawler, "_flush", lambda self: None)
            crawl(ws, [base + "/"])
        assert not ws.queue("web").rows()
        crawl(ws, [base + "/"])  # the next run
    assert {r["source"] for r in ws.queue("web").rows()} == {base + "/", base + "/new"}


CHAPTER = "Chapter {c}, paragraph {i}: the lattice turns its rings at {n} different speeds, one sentence of many."


def book(print_first: bool, noindex: bool = False):
    "A book of 3 chapters of 5 paragraphs and a print page holding all of them, linked first or last from the index."
    paras = {c: [CHAPTER.format(c=c, i=i, n=c * 10 + i) for i in range(5)] for c in (1, 2, 3)}
    body = lambda title, ps: "<html><body><article><h1>" + title + "</h1>" + "".join(f"<p>{p}</p>" for p in ps)
    head = '<html><head><meta name="robots" content="noindex"></head>' if noindex else ""
    chapters = [f"/ch{c}.html" for c in (1, 2, 3)]
    links = ["/print.html"] + chapters if print_first else chapters + ["/print.html"]
    routes = {f"/ch{c}.html": (200, HTML, body(f"Chapter {c}", ps) + "</article></body></html>")
              for c, ps in paras.items()}
    routes["/print.html"] = (200, HTML, head + body("The book", [p for ps in paras.values() for p in ps])
                             + "</article></body></html>")
    routes["/"] = (200, HTML, page("Contents", links))
    return routes


@pytest.mark.parametrize("print_first", [True, False])
def test_a_book_crawl_keeps_its_chapters_whatever_the_order_and_lists_the_print_page_as_refused(ws, print_first):
    "The page that gathers the chapters is the near-duplicate, not the chapters; `--rejected` and the panel say so."
    with serve(book(print_first)) as (base, log):
        rep = crawl(ws, [base + "/"])
        if print_first:
            assert log.index("/print.html") < log.index("/ch1.html")  # fetched before the chapters
    q = ws.queue("web")
    assert sorted(r["source"].replace(base, "") for r in q.rows()) == ["/", "/ch1.html", "/ch2.html", "/ch3.html"]
    assert rep.queued == 4 and rep.duplicates == 1
    why = statuses(ws, base)["/print.html"]
    assert why[0] == "duplicate" and why[1].startswith("a near-duplicate of " + base + "/ch1.html and 2 other sources")
    refused = {r["source"].replace(base, ""): r["reason"] for r in q.refused()}
    assert list(refused) == ["/print.html"] and "near-duplicate" in refused["/print.html"]
    out = subprocess.run([str(BIN / "cllm"), "queue", "web", "--rejected"], capture_output=True, text=True,
                         env=cllm_env(ws.home)).stdout
    assert "/print.html: a near-duplicate of " in out and "nothing was refused" not in out


def test_a_page_that_asks_not_to_be_kept_is_skipped_and_its_links_followed(ws):
    "mdBook's print page says `noindex`: skipped with that reason; `nofollow` leaves its links alone."
    routes = book(print_first=True, noindex=True)
    routes["/"] = (200, HTML, page("Contents", ["/print.html"]))  # the chapters reached only through the print page
    routes["/print.html"] = (200, HTML, routes["/print.html"][2].replace(
        "</article>", "".join(f'<a href="/ch{c}.html">{c}</a>' for c in (1, 2, 3)) + "</article>"))
    with serve(routes) as (base, log):
        rep = crawl(ws, [base + "/"])
        assert rep.queued == 4 and rep.skipped == 1
        why = "the page asks crawlers not to keep it (robots noindex)"
        assert statuses(ws, base)["/print.html"] == ("skipped", why)
    ws.create("other", preset_name="nano")
    routes["/"] = (200, {"Content-Type": "text/html", "X-Robots-Tag": "nofollow"},
                   page("Contents", ["/ch1.html", "/ch2.html"]))
    with serve(routes) as (base, log):
        rep = Crawler(ws, "other", delay=0, timeout=2.0).run([base + "/"])
        assert rep.queued == 1 and log == ["/robots.txt", "/"]


def test_a_partial_book_crawl_leaves_out_the_page_that_gathers_the_chapters_it_fetched(ws):
    "With 2 of 3 chapters fetched, the print page is not mostly in the queue, but it holds 2 of its sources whole."
    with serve(book(print_first=True)) as (base, log):
        rep = crawl(ws, [base + "/"], max_pages=4)  # the index, the print page, chapters 1 and 2
        assert rep.queued == 3 and rep.duplicates == 1
        why = statuses(ws, base)["/print.html"]
        assert why[0] == "duplicate" and why[1].startswith("a near-duplicate: it gathers 2 sources of the queue whole")
        rep = crawl(ws, [base + "/"])  # the rest: chapter 3 goes in (the print page is not in the queue)
        assert rep.queued == 1 and "/print.html" not in log[log.index("/ch2.html"):]
    assert sorted(r["source"].replace(base, "") for r in ws.queue("web").rows()) == [
        "/", "/ch1.html", "/ch2.html", "/ch3.html"]


def test_json_responses_give_their_rows_text_fields_as_files_do(ws):
    "A JSON or JSON lines response is read as `cllm add` reads such a file: the text field of each row."
    rows = [{"id": i, "body": f"Row {i}: a served row of text, long enough to be kept, number {i}."} for i in range(5)]
    routes = {"/": (200, HTML, page("Index", ["/rows.json", "/rows.jsonl", "/meta.json"])),
              "/rows.json": (200, {"Content-Type": "application/json"}, json.dumps(rows)),
              "/rows.jsonl": (200, {"Content-Type": "application/x-ndjson"},
                              "".join(json.dumps({"content": r["body"] + " again"}) + "\n" for r in rows)),
              "/meta.json": (200, {"Content-Type": "application/json"}, json.dumps({"id": 1, "url": "u"}))}
    with serve(routes) as (base, log):
        rep = crawl(ws, [base + "/"], text_fields=("body", "content"))
    st = statuses(ws, base)
    assert st["/rows.json"][0] == st["/rows.jsonl"][0] == "queued" and rep.queued == 3
    assert st["/meta.json"] == ("skipped", "no text field (body or content): columns id, url; use --text-field url")
    rows_of = {r["source"].replace(base, ""): r for r in ws.queue("web").rows()}
    assert rows_of["/rows.json"]["documents"] == 5 and rows_of["/rows.jsonl"]["documents"] == 5
