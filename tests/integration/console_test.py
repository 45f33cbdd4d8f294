"""The web console end to end: the real curation-server with --console-listen, its JSON API
over real HTTP, and Debian's headless chromium driving the pages through the DevTools protocol.

Usage: console_test.py CURATION_SERVER CURATION_CLI SAMPLE.jsonl.gz OUT_DIR
OUT_DIR receives the screenshots (and the server's log on failure)."""
import base64, http.client, json, os, shutil, subprocess, sys, tempfile, time, urllib.request

import websocket  # Debian's python3-websocket

SERVER, CLI, SAMPLE, OUT = sys.argv[1:5]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ADMIN = "console-test-admin-token-0123456789"
MARKER_PROMPT = "<script>window.__pwned = 1; document.title = 'PWNED'</script>Tell me a joke"
MARKER_CHOSEN = '<img src="x" onerror="window.__pwned = 2"> <b>bold?</b>'

failures = []


def check(condition, what):
    if not condition:
        failures.append(what)
        print("FAIL:", what, flush=True)


def wait_for(what, predicate, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    sys.exit(f"FAIL: timed out waiting for {what}")


class Server:
    def __init__(self, tmp):
        with open(os.path.join(tmp, "admin"), "w") as f:
            f.write(ADMIN)
        port_file = os.path.join(tmp, "port")
        self.log = os.path.join(tmp, "server.log")
        self.proc = subprocess.Popen(
            [SERVER, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(tmp, "db"),
             "--port-file", port_file, "--admin-token-file", os.path.join(tmp, "admin"),
             "--console-listen", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))
        wait_for("the port file", lambda: os.path.exists(port_file) or self.proc.poll() is not None)
        self.grpc = "127.0.0.1:" + open(port_file).read().strip()
        line = wait_for("'serving the console' in the log", lambda: next(
            (l for l in open(self.log) if '"serving the console"' in l), None))
        self.http = "127.0.0.1:" + json.loads(line)["port"]
        self.base = "http://" + self.http

    def log_text(self):
        return open(self.log).read()


def cli(server, token, *args):
    out = subprocess.run([CLI, "--server", server.grpc, "--token", token, "--json", *args],
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        sys.exit(f"FAIL: curation {' '.join(args)}: {out.stderr}")
    return json.JSONDecoder().raw_decode(out.stdout.strip())[0]


def cli_error(server, token, *args):
    out = subprocess.run([CLI, "--server", server.grpc, "--token", token, *args],
                         capture_output=True, text=True, timeout=60)
    return out.returncode, out.stderr


def request(server, method, path, token=None, body=None, headers=None, cookie=None):
    """(status, headers, parsed JSON or text) of one request."""
    conn = http.client.HTTPConnection(server.http, timeout=60)
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = "Bearer " + token
    if cookie is not None:
        h["Cookie"] = cookie
    if body is not None and "Content-Type" not in h:
        h["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read().decode()
    try:
        data = json.loads(data)
    except ValueError:
        pass
    return r.status, r.headers, data


def setup(server):
    """Two tenants; t1 holds a sample of HH-RLHF, a small dataset whose texts hold markup,
    two selections of each and a finished budget recommendation."""
    ids = {}
    for t in ("t1", "t2"):
        cli(server, ADMIN, "admin", "tenants", "create", t)
    ids["writer"] = cli(server, ADMIN, "admin", "tokens", "create", "--role", "writer", "--tenant", "t1")["secret"]
    ids["reader"] = cli(server, ADMIN, "admin", "tokens", "create", "--role", "reader", "--tenant", "t1")["secret"]
    ids["other"] = cli(server, ADMIN, "admin", "tokens", "create", "--role", "writer", "--tenant", "t2")["secret"]
    w = ids["writer"]
    cli(server, w, "datasets", "create", "hh", "--description", "HH-RLHF harmless sample")
    cli(server, w, "ingest", "hh", SAMPLE)
    cli(server, w, "datasets", "create", "markup", "--description", "texts that hold <b>markup</b>")
    tmp_json = os.path.join(OUT, "markup.json")
    with open(tmp_json, "w") as f:
        json.dump([{"prompt": MARKER_PROMPT, "chosen": MARKER_CHOSEN, "rejected": "A plain answer."},
                   {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"},
                   {"prompt": "Name a colour", "chosen": "Blue", "rejected": "<i>none</i>"}], f)
    cli(server, w, "ingest", "markup", tmp_json)
    ids["markup_sel"] = cli(server, w, "select", "markup", "--budget", "3", "--method", "random")["id"]
    ids["sel_a"] = cli(server, w, "select", "hh", "--budget", "20%", "--method", "random", "--name", "random 20%")["id"]
    ids["sel_b"] = cli(server, w, "select", "hh", "--budget", "20%", "--method", "herding", "--name", "herding 20%")["id"]
    op = cli(server, w, "recommend", "hh", "--budgets", "5,10,25,50,100", "--async")
    ids["rec_op"] = op["name"].split("/", 1)[1]
    done = wait_for("the recommendation", lambda: (lambda s: s if s[2].get("done") else None)(
        request(server, "GET", "/api/operations/" + ids["rec_op"], w)), timeout=240)
    check(done[2]["metadata"]["state"] == "OPERATION_STATE_SUCCEEDED", f"recommendation ended {done[2]}")
    return ids


def api_tests(server, ids):
    w, r, other = ids["writer"], ids["reader"], ids["other"]
    # Authentication: none, a wrong one, two headers.
    s, _, body = request(server, "GET", "/api/datasets")
    check(s == 401 and body["error"]["code"] == "UNAUTHENTICATED", f"no token: {s} {body}")
    s, _, body = request(server, "GET", "/api/datasets", "cur_nope_nope")
    check(s == 401, f"unknown token: {s} {body}")
    conn = http.client.HTTPConnection(server.http, timeout=30)
    conn.putrequest("GET", "/api/datasets")
    conn.putheader("Authorization", "Bearer " + r)
    conn.putheader("Authorization", "Bearer " + other)
    conn.endheaders()
    resp = conn.getresponse()
    check(resp.status == 401, f"two Authorization headers: {resp.status}")
    resp.read()

    # Tenancy: each tenant sees its own datasets only; another's is NOT_FOUND, as over gRPC.
    s, _, body = request(server, "GET", "/api/datasets", r)
    names = sorted(d["name"] for d in body.get("datasets", []))
    check(s == 200 and names == ["hh", "markup"], f"t1 reader lists {s} {names}")
    hh = next(d for d in body["datasets"] if d["name"] == "hh")
    check(hh["example_count"] == "499" and int(hh["stored_bytes"]) > 0 and
          hh["embedding"]["embedder"], f"hh as listed: {hh}")
    s, _, body = request(server, "GET", "/api/datasets", other)
    check(s == 200 and body["datasets"] == [], f"t2 lists {s} {body}")
    s, _, body = request(server, "GET", "/api/datasets/hh", other)
    rc, err = cli_error(server, other, "datasets", "get", "hh")
    check(s == 404 and body["error"]["code"] == "NOT_FOUND" and rc != 0 and "NOT_FOUND" in err,
          f"t2 reads t1's dataset: HTTP {s} {body}; gRPC: {err.strip()}")
    s, _, body = request(server, "GET", "/api/selections/" + ids["sel_a"], other)
    check(s == 404, f"t2 reads t1's selection: {s} {body}")
    s, _, body = request(server, "GET", "/api/operations/" + ids["rec_op"], other)
    check(s == 404, f"t2 reads t1's operation: {s} {body}")
    s, _, body = request(server, "GET", "/api/datasets", ADMIN)
    check(s == 403 and body["error"]["code"] == "PERMISSION_DENIED", f"admin token: {s} {body}")

    # Bad parameters: 400 naming the field, ours and the service's.
    for path, field in [("/api/datasets?page_size=abc", "page_size"),
                        ("/api/datasets?page_size=-1", "page_size"),  # the service's check
                        ("/api/datasets?page_size=3000000000", "page_size"),  # past int32
                        ("/api/datasets?page_token=zz%21", "page_token"),
                        ("/api/datasets?colour=red", "colour"),
                        ("/api/datasets?token=" + r, "token"),
                        ("/api/datasets/bad%20name", "name"),
                        (f"/api/selections/{ids['sel_a']}?limit=501", "limit"),
                        (f"/api/selections/{ids['sel_a']}?limit=0", "limit"),
                        (f"/api/selections/{ids['sel_a']}?offset=-1", "offset"),
                        (f"/api/selections/{ids['sel_a']}/histogram?bins=201", "bins"),
                        (f"/api/compare?a={ids['sel_a']}", "b")]:
        s, _, body = request(server, "GET", path, r)
        check(s == 400 and body["error"].get("field") == field,
              f"{path.replace(r, 'TOKEN')}: expected 400 on {field}, got {s} {body}")
    s, _, body = request(server, "GET", "/api/nothing", r)
    check(s == 404, f"unknown route: {s}")
    s, _, body = request(server, "POST", "/api/session", body="x" * 20000)
    check(s == 413, f"large body: {s}")

    # A selection's items, paged, with texts; the histogram; the overlap.
    s, _, page = request(server, "GET", f"/api/selections/{ids['sel_a']}?offset=10&limit=5", r)
    check(s == 200 and page["total"] == 100 and len(page["items"]) == 5 and
          page["items"][0]["rank"] == 11 and page["items"][0]["example"]["pair"]["prompt"],
          f"items page: {s} {str(page)[:400]}")
    s, _, h = request(server, "GET", f"/api/selections/{ids['sel_b']}/histogram?bins=10", r)
    check(s == 200 and len(h["counts"]) == 10 and sum(h["counts"]) + h["non_finite"] == 100,
          f"histogram: {s} {h}")
    s, _, c = request(server, "GET", f"/api/compare?a={ids['sel_a']}&b={ids['sel_b']}", r)
    o = c.get("overlap", {})
    check(s == 200 and o["a_count"] == 100 and o["b_count"] == 100 and
          o["both"] + o["only_a"] == 100 and 0 <= o["jaccard"] <= 1, f"compare: {s} {o}")
    s, _, c = request(server, "GET", f"/api/compare?a={ids['sel_a']}&b={ids['sel_a']}", r)
    check(s == 200 and c["overlap"]["both"] == 100 and c["overlap"]["jaccard"] == 1, f"self: {c}")

    # Cancelling: the one write. A reader may not stop a selection (as over gRPC); cancelling a
    # finished job leaves it as it was. Other sites' pages and form posts are refused.
    s, _, ops = request(server, "GET", "/api/datasets/hh/operations", r)
    select_op = next(op["name"].split("/", 1)[1] for op in ops["operations"]
                     if op["metadata"]["kind"] == "OPERATION_KIND_SELECT")
    s, _, body = request(server, "POST", f"/api/operations/{select_op}/cancel", r, body="")
    check(s == 403 and body["error"]["code"] == "PERMISSION_DENIED", f"reader cancels: {s} {body}")
    s, _, body = request(server, "POST", f"/api/operations/{select_op}/cancel", w, body="")
    check(s == 200 and body["metadata"]["state"] == "OPERATION_STATE_SUCCEEDED", f"cancel done: {s} {body}")
    s, _, body = request(server, "GET", f"/api/operations/{select_op}/cancel", w)
    check(s == 405, f"GET cancel: {s}")
    s, _, body = request(server, "POST", f"/api/operations/{select_op}/cancel", w, body="",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    check(s == 415, f"form post: {s}")
    s, _, body = request(server, "POST", f"/api/operations/{select_op}/cancel", w, body="",
                      headers={"Origin": "http://evil.example"})
    check(s == 403 and body["error"].get("field") == "Origin", f"cross-origin post: {s} {body}")

    # Sign-in sets an HttpOnly, same-site cookie that then authenticates.
    s, headers, body = request(server, "POST", "/api/session", body=json.dumps({"token": "cur_x_y"}))
    check(s == 401 and "Set-Cookie" not in headers, f"sign-in with a bad token: {s}")
    s, headers, body = request(server, "POST", "/api/session", body=json.dumps({"token": r}))
    cookie = headers.get("Set-Cookie", "")
    check(s == 200 and body["tenant"] == "t1" and body["role"] == "ROLE_READER" and
          "HttpOnly" in cookie and "SameSite=Strict" in cookie, f"sign-in: {s} {body} {cookie}")
    s, _, body = request(server, "GET", "/api/datasets/hh", cookie=cookie.split(";")[0])
    check(s == 200 and body["name"] == "hh", f"cookie: {s}")

    # Every response carries the security headers; the page is what the binary embeds.
    for path in ("/", "/console.js", "/api/datasets"):
        s, headers, body = request(server, "GET", path, r)
        csp = headers.get("Content-Security-Policy", "")
        check("script-src 'self'" in csp and "default-src 'none'" in csp and
              headers.get("X-Content-Type-Options") == "nosniff", f"{path}: headers {dict(headers)}")
    s, _, _ = request(server, "GET", "/etc/passwd")
    check(s == 404, f"a path that is no asset: {s}")
    s, headers, body = request(server, "GET", "/")
    check(s == 200 and "text/html" in headers["Content-Type"] and "console.js" in body, f"/: {s}")


class Chrome:
    """Headless chromium and one page, over the DevTools protocol."""

    def __init__(self, tmp):
        profile = os.path.join(tmp, "chrome-profile")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", "--remote-debugging-port=0",
             "--remote-allow-origins=*", "--user-data-dir=" + profile, "--window-size=1280,900",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "chrome.log"), "w"))
        port_file = os.path.join(profile, "DevToolsActivePort")
        wait_for("chromium's DevToolsActivePort",
                 lambda: os.path.exists(port_file) and open(port_file).read().count("\n") >= 1)
        port = open(port_file).read().split("\n")[0]
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60)
        self.next_id = 0
        self.send("Page.enable")
        self.send("Runtime.enable")

    def send(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    sys.exit(f"FAIL: DevTools {method}: {message['error']}")
                return message["result"]

    def eval(self, expression):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            sys.exit(f"FAIL: {expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression, what, timeout=30):
        return wait_for(what, lambda: self.eval(expression), timeout)

    def screenshot(self, name):
        png = base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(png)

    def close(self):
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


def browser_tests(server, ids):
    tmp = tempfile.mkdtemp(prefix="console-chrome-")
    chrome = Chrome(tmp)
    try:
        chrome.send("Page.navigate", url=server.base + "/")
        chrome.wait("!!document.getElementById('signin') && !document.getElementById('signin').hidden",
                    "the sign-in form")
        chrome.screenshot("signin.png")
        # A wrong token: the form says so and stays.
        chrome.eval("document.getElementById('token').value = 'cur_wrong_token';"
                    "document.getElementById('sign-in').click()")
        msg = chrome.wait("document.getElementById('signin-error').textContent", "the sign-in error")
        check("invalid" in msg, f"wrong token message: {msg}")
        chrome.eval(f"document.getElementById('token').value = {json.dumps(ids['reader'])};"
                    "document.getElementById('sign-in').click()")
        chrome.wait("!!document.getElementById('datasets-table')", "the datasets table")
        check(chrome.eval("document.getElementById('whoami').textContent") == "tenant t1 · reader",
              "who am I")
        # The token is in no URL and out of the scripts' reach (HttpOnly cookie).
        check(ids["reader"] not in chrome.eval("location.href + document.cookie + document.body.outerHTML"),
              "the token shows in the page, its URL or document.cookie")
        rows = chrome.eval("[...document.querySelectorAll('#datasets-table tbody tr')]"
                           ".map(r => [...r.cells].map(c => c.textContent))")
        hh = next((row for row in rows if row[0] == "hh"), None)
        check(hh is not None and hh[2] == "499" and hh[3] == "2" and "hashed-ngrams" in hh[5],
              f"datasets table: {rows}")
        chrome.screenshot("datasets.png")

        # A job started now: the dataset page follows it without a reload (polling) until it
        # ends. How far it got when the page first drew it depends on the machine; only the
        # page's final state and the cancel buttons' consistency with the states are checked.
        live = cli(server, ids["writer"], "recommend", "hh", "--budgets", "2,5,10,25,50,75,100",
                   "--with-random", "--async")["name"].split("/", 1)[1]
        chrome.eval("location.hash = '#/datasets/hh'")
        chrome.wait("!!document.getElementById('selections-table') && !!document.getElementById('operations-table')",
                    "the dataset page")
        row = f"document.querySelector('#operations-table tr[data-operation=\"{live}\"]')"
        first = chrome.eval(f"{row}.cells[2].textContent + ' ' + {row}.cells[3].textContent")
        print("the new job as first drawn:", first)
        buttons = chrome.eval("[...document.querySelectorAll('#operations-table tbody tr')].map(r => "
                              "r.cells[2].textContent + ':' + r.querySelectorAll('button.cancel').length)")
        check(all(b.endswith(":0") == (b.split(":")[0] in ("succeeded", "failed", "cancelled"))
                  for b in buttons), f"cancel buttons by state: {buttons}")
        chrome.wait(f"{row} && {row}.cells[2].textContent === 'succeeded'", "the job's end on the page",
                    timeout=240)
        chrome.wait(f"!{row}.querySelector('button.cancel')", "the cancel button gone")
        sels = chrome.eval("[...document.querySelectorAll('#selections-table tbody tr')].map(r => r.cells[1].textContent)")
        check(sorted(sels) == sorted([ids["sel_a"], ids["sel_b"]]), f"selections listed: {sels}")
        kinds = chrome.eval("[...document.querySelectorAll('#operations-table tbody tr')].map(r => r.cells[1].textContent + ' ' + r.cells[2].textContent)")
        check(kinds.count("recommend_budget succeeded") == 2 and kinds.count("select succeeded") == 2,
              f"operations listed: {kinds}")
        chrome.screenshot("dataset.png")

        chrome.eval(f"location.hash = '#/selections/{ids['sel_b']}'")
        chrome.wait("!!document.getElementById('items-table') && !!document.getElementById('histogram')",
                    "the selection page")
        info = chrome.eval("document.getElementById('page-info').textContent")
        check(info == "items 1–25 of 100", f"page info: {info}")
        check(chrome.eval("document.querySelectorAll('#items-table tbody tr').length") == 25, "25 items shown")
        check(chrome.eval("document.querySelectorAll('#histogram rect.bar').length") == 30, "30 histogram bars")
        chrome.eval("document.getElementById('next').click()")
        chrome.wait("document.getElementById('page-info') && document.getElementById('page-info').textContent === 'items 26–50 of 100'",
                    "the second page")
        check(chrome.eval("document.querySelector('#items-table tbody tr').cells[0].textContent") == "26",
              "the second page starts at rank 26")
        chrome.screenshot("selection.png")

        # Markup in a text is shown as text and never runs.
        chrome.eval(f"location.hash = '#/selections/{ids['markup_sel']}'")
        chrome.wait("!!document.getElementById('items-table') && document.getElementById('selection-id').textContent === " +
                    json.dumps(ids["markup_sel"]), "the markup selection")
        prompts = chrome.eval("[...document.querySelectorAll('#items-table td.prompt')].map(c => c.textContent)")
        chosen = chrome.eval("[...document.querySelectorAll('#items-table div.chosen')].map(c => c.textContent)")
        check(MARKER_PROMPT in prompts and MARKER_CHOSEN in chosen, f"markup shown as text: {prompts} {chosen}")
        check(chrome.eval("document.querySelectorAll('#view script, #view img, #view b, #view i').length") == 0,
              "markup from a text became elements")
        time.sleep(0.5)  # give a would-be image error handler the chance to run (not a pass criterion)
        check(chrome.eval("window.__pwned === undefined && document.title !== 'PWNED'"),
              "a <script> or onerror from a text ran")
        chrome.screenshot("markup.png")

        chrome.eval(f"location.hash = '#/operations/{ids['rec_op']}'")
        chrome.wait("!!document.getElementById('curve') && !!document.getElementById('recommendation')",
                    "the learning curve")
        check(chrome.eval("document.querySelectorAll('#curve circle.point').length") == 5, "5 curve points")
        check(chrome.eval("!!document.querySelector('#curve path.fit')"), "the fitted curve")
        rec = chrome.eval("document.getElementById('recommendation').textContent")
        check("Recommended budget" in rec and "Scaling law" in rec, f"recommendation: {rec}")
        chrome.screenshot("learning-curve.png")

        chrome.eval(f"location.hash = '#/compare/{ids['sel_a']}/{ids['sel_b']}'")
        chrome.wait("!!document.getElementById('overlap')", "the comparison")
        overlap = chrome.eval("document.getElementById('overlap').textContent")
        _, _, c = request(server, "GET", f"/api/compare?a={ids['sel_a']}&b={ids['sel_b']}", ids["reader"])
        check(f"In both{c['overlap']['both']}" in overlap, f"overlap shown: {overlap}")
        chrome.screenshot("compare.png")

        # Another tenant's dataset: the page shows the service's NOT_FOUND.
        chrome.eval("location.hash = '#/datasets/nope'")
        err = chrome.wait("document.getElementById('error') && document.getElementById('error').textContent",
                          "the error")
        check(err.startswith("NOT_FOUND"), f"missing dataset: {err}")

        cookies = chrome.send("Network.getCookies", urls=[server.base + "/"])["cookies"]
        check(len(cookies) == 1 and cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Strict",
              f"the sign-in cookie: {cookies}")
        chrome.eval("document.getElementById('sign-out').click()")
        chrome.wait("!document.getElementById('signin').hidden", "signed out")
        cookies = chrome.send("Network.getCookies", urls=[server.base + "/"])["cookies"]
        check(cookies == [], f"cookies after sign-out: {cookies}")
    finally:
        chrome.close()
        shutil.rmtree(tmp, ignore_errors=True)


def bad_address_test(tmp):
    """An address the console cannot listen on stops the server at start, saying why."""
    out = subprocess.run([SERVER, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(tmp, "bad-db"),
                          "--auth=false", "--console-listen", "127.0.0.1:notaport"],
                         capture_output=True, text=True, timeout=120)
    check(out.returncode == 1 and "--console-listen" in out.stderr and
          "cannot listen" in out.stderr, f"bad --console-listen: {out.returncode} {out.stderr[-2000:]}")


def main():
    if CHROMIUM is None:
        sys.exit("FAIL: no chromium (scripts/deps installs Debian's)")
    os.makedirs(OUT, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="console-test-")
    bad_address_test(tmp)
    server = Server(tmp)
    try:
        ids = setup(server)
        api_tests(server, ids)
        browser_tests(server, ids)
        log = server.log_text()
        for name in ("writer", "reader", "other"):
            check(ids[name] not in log, f"the {name} token is in the server's log")
        check(ADMIN not in log, "the admin token is in the server's log")
        check('"console request"' in log, "console requests are logged")
        server.proc.terminate()
        check(server.proc.wait(timeout=60) == 0, "the server stops cleanly with the console on")
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
        shutil.copy(server.log, os.path.join(OUT, "server.log"))
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        sys.exit(f"FAIL: {len(failures)} check(s) failed")
    print("PASS: console API and pages; screenshots in", OUT)


main()
