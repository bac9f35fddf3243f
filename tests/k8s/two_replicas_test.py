#!/usr/bin/python3
"""Two replicas of every service against one database: nothing lost, no
email sent twice.

What Kubernetes does with `replicas: 2`, on this machine: one throwaway
PostgreSQL with ONE database (all three schemas in it), two processes of
each of identity, membership, notification and gateway on free ports, and
an SMTP sink (aiosmtpd) both notification replicas deliver to. Replica r's
gateway calls replica r's services, and each service calls the OTHER
replica's peers, so every cross-service path (user syncs, grants, emails)
crosses replicas, while both replicas' outbox relays and delivery workers
compete for the same rows (FOR UPDATE SKIP LOCKED). Both replicas of a
service start at the same moment, so the migrations race on the advisory
lock too.

Driven through both gateways concurrently: invitations (with emails) and
a CSV import (with emails). Then asserts: every invited/imported user
exists once in identity (ListUsers from both gateways) and in membership
(group members), each recipient got exactly one invitation email, no
message is FAILED or stuck in the queue, and no outbox row is dead.

Usage: two_replicas_test.py --bin-dir DIR (DIR/services/<svc>/<svc>), or
under Bazel with the binaries as data (RUNFILES). Needs root or a normal
user that can run PostgreSQL's initdb (as root it uses `runuser -u
postgres`, like tests/testing/postgres.cc).
"""

import argparse
import concurrent.futures
import email
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

SERVICES = ["identity", "membership", "notification", "gateway"]
PG_BIN = "/usr/lib/postgresql/15/bin"
INVITES_PER_GATEWAY = 8
IMPORT_ROWS = 12


def log(msg):
    print(f"[two_replicas] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


# ------------------------------------------------------------- PostgreSQL

class Postgres:
    """A throwaway cluster under /tmp (the postgres user cannot reach
    /root, where Bazel keeps TEST_TMPDIR)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="guestlist-2r-pg-", dir="/tmp")
        self.port = free_port()
        self.root = os.geteuid() == 0
        if self.root:
            shutil.chown(self.dir, "postgres", "postgres")
            os.chmod(self.dir, 0o700)
        data = os.path.join(self.dir, "data")
        self._pg([f"{PG_BIN}/initdb", "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8", "-D", data])
        self._pg([f"{PG_BIN}/pg_ctl", "-D", data, "-w", "-l",
                  os.path.join(self.dir, "server.log"), "-o",
                  f"-p {self.port} -c listen_addresses=127.0.0.1 "
                  f"-k {self.dir} -c max_connections=400 -c fsync=off",
                  "start"])
        self.data = data
        self.psql("CREATE DATABASE guestlist", db="postgres")

    def _pg(self, cmd):
        if self.root:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        subprocess.run(cmd, check=True, cwd="/", stdout=subprocess.DEVNULL)

    def url(self):
        return (f"host=127.0.0.1 port={self.port} user=postgres "
                "dbname=guestlist")

    def psql(self, sql, db="guestlist"):
        out = subprocess.run(
            ["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h",
             "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db,
             "-c", sql],
            capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {out.stderr.strip()}")
        return out.stdout.strip()

    def stop(self):
        try:
            self._pg([f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", "immediate",
                      "-w", "stop"])
        except (subprocess.CalledProcessError, AttributeError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------- SMTP sink

class Sink:
    """Records every delivered message (recipients + parsed headers)."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages = []
        self.lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                msg = email.message_from_bytes(envelope.content)
                with sink.lock:
                    sink.messages.append((list(envelope.rcpt_tos), msg))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1",
                                     port=self.port)
        self.controller.start()

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def stop(self):
        self.controller.stop()


# ----------------------------------------------------------------- stack

class Stack:
    def __init__(self, bin_dir, work, pg, sink):
        self.procs = {}
        self.logs = {}
        self.envs = {}
        self.token = "op-" + os.urandom(16).hex()
        grpc = ["identity", "membership", "notification"]
        self.ports = {(s, r): free_port() for s in SERVICES for r in (0, 1)}
        base_env = dict(os.environ)
        for k in list(base_env):
            if k.startswith("GUESTLIST_"):
                del base_env[k]
        base_env.update({
            "GUESTLIST_OPERATOR_TOKEN": self.token,
            "GUESTLIST_SMTP_URL": f"smtp://127.0.0.1:{sink.port}",
            "GUESTLIST_PUBLIC_URL": "http://guestlist.test",
            "GUESTLIST_GRACE_PERIOD": "2s",
            # Short retry delays keep the test quick if a peer is briefly
            # not there yet while everything starts.
            "GUESTLIST_NOTIFICATION_RETRY_BASE_DELAY": "200ms",
            "GUESTLIST_NOTIFICATION_DELIVERY_POLL_INTERVAL": "50ms",
        })
        for s in grpc:
            base_env[f"GUESTLIST_{s.upper()}_DATABASE_URL"] = pg.url()
        self.gateway_urls = []
        for r in (0, 1):
            other = 1 - r
            for s in SERVICES:
                env = dict(base_env)
                # Gateway r -> services r; service r -> peers of replica 1-r.
                peer = r if s == "gateway" else other
                for p in grpc:
                    env[f"GUESTLIST_{p.upper()}_ADDR"] = \
                        f"127.0.0.1:{self.ports[(p, peer)]}"
                env[f"GUESTLIST_{s.upper()}_PORT"] = str(self.ports[(s, r)])
                self.logs[(s, r)] = os.path.join(work, f"{s}-{r}.log")
                self.procs[(s, r)] = None
                self.envs[(s, r)] = env
            self.gateway_urls.append(
                f"http://127.0.0.1:{self.ports[('gateway', r)]}")
        self.bin_dir = bin_dir

    def start(self, service, replica):
        path = os.path.join(self.bin_dir, "services", service, service)
        out = open(self.logs[(service, replica)], "ab")
        self.procs[(service, replica)] = subprocess.Popen(
            [path], env=self.envs[(service, replica)], stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_port(self, service, replica, timeout=60):
        deadline = time.time() + timeout
        port = self.ports[(service, replica)]
        while time.time() < deadline:
            if port_open(port):
                return
            proc = self.procs[(service, replica)]
            if proc.poll() is not None:
                raise RuntimeError(f"{service}-{replica} exited with "
                                   f"{proc.returncode}:\n{self.tail(service, replica)}")
            time.sleep(0.1)
        raise RuntimeError(f"{service}-{replica} did not open port {port}:\n"
                           f"{self.tail(service, replica)}")

    def tail(self, service, replica, lines=20):
        try:
            with open(self.logs[(service, replica)], errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def start_all(self):
        # Both replicas of a service at once: they race for the migration
        # lock on the same schema.
        for s in SERVICES:
            self.start(s, 0)
            self.start(s, 1)
        for s in SERVICES:
            for r in (0, 1):
                self.wait_port(s, r)
        for url in self.gateway_urls:
            deadline = time.time() + 30
            while True:
                status, body = http("GET", url + "/readyz")
                if status == 200:
                    break
                if time.time() > deadline:
                    raise RuntimeError(f"{url}/readyz: {status} {body}")
                time.sleep(0.2)

    def stop_all(self):
        for proc in self.procs.values():
            if proc and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for key, proc in self.procs.items():
            if not proc:
                continue
            try:
                code = proc.wait(timeout=15)
                if code != 0:
                    log(f"{key[0]}-{key[1]} exited with {code}")
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def http(method, url, body=None, token=None, content_type="application/json"):
    data = None
    headers = {}
    if body is not None:
        data = body.encode() if isinstance(body, str) else body
        headers["content-type"] = content_type
    if token:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e)


def call(method, url, body=None, token=None, want=200, **kw):
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    status, text = http(method, url, body, token, **kw)
    if status != want:
        raise AssertionError(f"{method} {url} -> {status} (want {want}): {text}")
    return json.loads(text) if text.strip().startswith(("{", "[")) else text


# ------------------------------------------------------------------ test

class Failures:
    def __init__(self):
        self.items = []

    def check(self, ok, message):
        if not ok:
            self.items.append(message)
            log("FAIL: " + message)


def list_all_users(gw, ws, admin):
    users, token = [], ""
    while True:
        q = "?pageSize=100" + (f"&pageToken={token}" if token else "")
        page = call("GET", f"{gw}/v1/workspaces/{ws}/users{q}", token=admin)
        users += page.get("users", [])
        token = page.get("nextPageToken", "")
        if not token:
            return users, page.get("totalSize")


def list_all_members(gw, group, admin):
    members, token = [], ""
    while True:
        q = "?pageSize=100" + (f"&pageToken={token}" if token else "")
        page = call("GET", f"{gw}/v1/groups/{group}/members{q}", token=admin)
        members += page.get("members", [])
        token = page.get("nextPageToken", "")
        if not token:
            return members


def run(stack, pg, sink):
    f = Failures()
    g0, g1 = stack.gateway_urls
    ws = call("POST", f"{g0}/v1/workspaces", {
        "workspace": {"name": "tworeplicas", "displayName": "Two Replicas",
                      "licenseCount": 200},
        "adminEmail": "admin@two.example",
        "adminPassword": "a long enough password"}, token=stack.token)["id"]
    # Log in through the other replica: sessions live in the database.
    admin = call("POST", f"{g1}/v1/workspaces/{ws}/sessions",
                 {"username": "admin@two.example",
                  "password": "a long enough password"})["token"]
    group = call("POST", f"{g0}/v1/workspaces/{ws}/groups",
                 {"name": "Partners", "visibility": "OPEN"}, token=admin)["id"]

    # Invitations through both gateways at once.
    def invite(i):
        gw = (g0, g1)[i % 2]
        return call("POST", f"{gw}/v1/workspaces/{ws}/invitations", {
            "email": f"guest{i}@invite.example", "firstName": f"Guest{i}",
            "kind": "GUEST", "groupIds": [group], "sendEmail": True},
            token=admin)

    n_invites = 2 * INVITES_PER_GATEWAY
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        invites = list(pool.map(invite, range(n_invites)))
    f.check(all(i.get("state") == "PENDING" for i in invites),
            "an invitation is not PENDING")

    # A CSV import (with emails) through gateway 1 while gateway 0 is busy
    # with more invitations.
    csv = "username,first_name,last_name,role,user-group-1\r\n" + "".join(
        f"imported{i}@import.example,Imp{i},Orted,guest,Partners\r\n"
        for i in range(IMPORT_ROWS))

    def do_import():
        return http("POST", f"{g1}/v1/workspaces/{ws}/users:import"
                    "?mode=ALL_OR_NOTHING&sendEmails=true", csv, token=admin,
                    content_type="text/csv")

    def late_invite(i):
        return invite(n_invites + 2 * i)  # even -> gateway 0

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        imp = pool.submit(do_import)
        late = list(pool.map(late_invite, range(4)))
        status, text = imp.result()
    imported = {f"imported{i}@import.example" for i in range(IMPORT_ROWS)}
    if status == 501:
        # identity answers UNIMPLEMENTED until its ImportUsers lands; the
        # rest of the test still runs, and the import is asserted from the
        # moment it exists.
        log("SKIPPED the CSV import: ImportUsers is not implemented yet "
            f"({text.strip()[:120]})")
        imported = set()
    else:
        f.check(status == 200, f"import -> {status}: {text}")
        report = json.loads(text) if status == 200 else {}
        f.check(int(report.get("created", 0)) == IMPORT_ROWS,
                f"import created {report.get('created')} of {IMPORT_ROWS}: "
                f"{text[:500]}")
        f.check(int(report.get("failed", 0)) == 0, f"import failures: {text[:500]}")

    invited = {f"guest{i}@invite.example" for i in range(n_invites)} | \
        {f"guest{n_invites + 2 * i}@invite.example" for i in range(len(late))}
    expected = invited | imported

    # Every email arrives exactly once.
    deadline = time.time() + 60
    while time.time() < deadline:
        got = {r for rcpts, _ in sink.snapshot() for r in rcpts}
        if expected <= got:
            break
        time.sleep(0.25)
    # Give racing workers time to show a duplicate (longer than the
    # delivery poll interval and any retry of a half-finished send).
    time.sleep(3)
    counts = {}
    for rcpts, _ in sink.snapshot():
        for r in rcpts:
            counts[r] = counts.get(r, 0) + 1
    missing = sorted(expected - set(counts))
    dupes = sorted(r for r, c in counts.items() if c > 1 and r in expected)
    f.check(not missing, f"no email reached {missing}")
    f.check(not dupes, f"emailed more than once: "
            f"{[(r, counts[r]) for r in dupes]}")
    log(f"{sum(counts.values())} emails for {len(expected)} invitees, "
        f"{len(dupes)} duplicated, {len(missing)} missing")

    # Every user exactly once, seen identically through both replicas.
    for gw in (g0, g1):
        users, total = list_all_users(gw, ws, admin)
        names = [u.get("username") for u in users]
        f.check(len(names) == len(set(names)), f"{gw}: duplicate users")
        f.check(expected <= set(names),
                f"{gw}: users missing: {sorted(expected - set(names))}")
        f.check(total in (None, len(users)),
                f"{gw}: totalSize {total} != {len(users)} listed")

    # Membership got every user and grant (synced across replicas).
    want_ids = {u["id"] for u in list_all_users(g0, ws, admin)[0]
                if u.get("username") in expected}
    deadline = time.time() + 20
    while True:
        members = list_all_members(g1, group, admin)
        ids = [m.get("userId") or (m.get("user") or {}).get("id")
               for m in members]
        if want_ids <= set(ids) or time.time() > deadline:
            break
        time.sleep(0.25)
    f.check(len(ids) == len(set(ids)), "duplicate group members")
    f.check(want_ids <= set(ids),
            f"{len(want_ids - set(ids))} users missing from the group")

    # The database agrees: nothing failed, stuck or dead.
    time.sleep(1)
    states = pg.psql("SELECT state || '=' || count(*) FROM notification.messages "
                     "GROUP BY state ORDER BY 1").split()
    log(f"notification.messages: {states}")
    sent = pg.psql("SELECT count(*) FROM notification.messages "
                   "WHERE state = 'SENT'")
    f.check(int(sent) == len(expected),
            f"{sent} SENT messages, want {len(expected)} ({states})")
    dup_rows = pg.psql("SELECT count(*) FROM (SELECT recipient FROM "
                       "notification.messages GROUP BY recipient, template "
                       "HAVING count(*) > 1) d")
    f.check(dup_rows == "0", f"{dup_rows} recipients with two message rows")
    # Every outbox drains: each row is a cross-service call (user sync,
    # grant, email) that has to succeed once; rows left behind are work
    # lost or stuck, dead rows are work given up on.
    for schema in ("identity", "membership", "notification"):
        if not pg.psql(f"SELECT to_regclass('{schema}.outbox')"):
            continue  # this service keeps no outbox
        columns = pg.psql("SELECT string_agg(column_name, ',') FROM "
                          "information_schema.columns WHERE table_schema = "
                          f"'{schema}' AND table_name = 'outbox'").split(",")
        live = "NOT dead" if "dead" in columns else "true"
        deadline = time.time() + 15
        while True:
            left = pg.psql(f"SELECT count(*) FROM {schema}.outbox WHERE {live}")
            if left == "0" or time.time() > deadline:
                break
            time.sleep(0.25)
        f.check(left == "0", f"{left} rows of {schema}.outbox never delivered")
        if "dead" in columns:
            dead = pg.psql(f"SELECT count(*) FROM {schema}.outbox WHERE dead")
            f.check(dead == "0", f"{dead} dead rows in {schema}.outbox")
    migrations = pg.psql("SELECT count(*) FROM identity.schema_migrations")
    distinct = pg.psql("SELECT count(DISTINCT version) FROM "
                       "identity.schema_migrations")
    f.check(migrations == distinct, "a migration was recorded twice")
    return f


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin-dir", help="root holding services/<svc>/<svc>")
    args = parser.parse_args(argv)
    bin_dir = args.bin_dir
    if not bin_dir:
        bin_dir = os.path.join(os.environ["TEST_SRCDIR"],
                               os.environ.get("TEST_WORKSPACE", "guestlist"))
    work = tempfile.mkdtemp(prefix="guestlist-2r-",
                            dir=os.environ.get("TEST_TMPDIR"))
    pg = sink = stack = None
    failures = None
    try:
        pg = Postgres()
        sink = Sink()
        stack = Stack(bin_dir, work, pg, sink)
        stack.start_all()
        log("8 processes up against one database; driving both gateways")
        failures = run(stack, pg, sink)
    except Exception as e:  # report with the logs, then fail
        log(f"ERROR: {e}")
        failures = Failures()
        failures.items.append(str(e))
    finally:
        if stack:
            stack.stop_all()
            if failures and failures.items:
                for key in stack.procs:
                    log(f"--- {key[0]}-{key[1]} log tail ---\n"
                        f"{stack.tail(*key, lines=8)}")
        if sink:
            sink.stop()
        if pg:
            pg.stop()
        if not os.environ.get("TEST_TMPDIR"):
            shutil.rmtree(work, ignore_errors=True)
    if failures.items:
        log(f"{len(failures.items)} failure(s)")
        return 1
    log("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
