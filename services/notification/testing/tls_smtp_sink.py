#!/usr/bin/python3
"""TLS SMTP sink for tests (Debian's python3-aiosmtpd).

Accepts mail over STARTTLS (--mode starttls, TLS required before MAIL) or
implicit TLS (--mode smtps), optionally demands AUTH (--user/--password),
and writes every message to --out as <n>.eml (envelope in X-Envelope-*
headers). Writes --out/READY once listening.
"""
import argparse
import os
import ssl
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, out):
        self.out = out
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        path = os.path.join(self.out, "%d.eml" % self.count)
        with open(path + ".tmp", "wb") as f:
            f.write(b"X-Envelope-From: <%s>\r\n" % envelope.mail_from.encode())
            f.write(b"X-Envelope-To: <%s>\r\n" % ",".join(envelope.rcpt_tos).encode())
            f.write(envelope.original_content or envelope.content)
        os.rename(path + ".tmp", path)
        return "250 2.0.0 OK queued"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--mode", choices=["starttls", "smtps"], required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--user", default="")
    p.add_argument("--password", default="")
    a = p.parse_args()

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)
    kwargs = {}
    if a.user:
        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword)
                  and auth_data.login == a.user.encode()
                  and auth_data.password == a.password.encode())
            return AuthResult(success=ok)
        # With implicit TLS aiosmtpd does not see the session as TLS, so it
        # would never offer AUTH; the socket is encrypted either way.
        kwargs.update(authenticator=authenticator, auth_required=True,
                      auth_require_tls=a.mode == "starttls")
    if a.mode == "starttls":
        kwargs.update(tls_context=ctx, require_starttls=True)
    else:
        kwargs.update(ssl_context=ctx)
    controller = Controller(Handler(a.out), hostname="127.0.0.1", port=a.port,
                            **kwargs)
    controller.start()
    open(os.path.join(a.out, "READY"), "w").close()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
