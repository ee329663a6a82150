"""A real SMTP server (aiosmtpd) for the tests (`mailroom_tests::smtp`).

Accepted messages are stored in a Maildir. STARTTLS or implicit TLS with the given certificate,
AUTH PLAIN/LOGIN for one user, and two recipients refused the way real servers refuse:
rejected@… gets 550 (permanent), greylisted@… gets 451 (transient). Prints READY when listening.
"""

import argparse
import mailbox
import signal
import ssl

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, maildir):
        self.box = mailbox.Maildir(maildir, create=True)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if local == "rejected":
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if local == "greylisted":
            return "451 4.7.1 <%s>: Recipient address rejected: Greylisted, try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        key = self.box.add(envelope.original_content)
        return "250 2.0.0 Ok: queued as %s" % key


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--maildir", required=True)
    p.add_argument("--mode", choices=["plain", "starttls", "tls"], default="starttls")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user", default="mailroom")
    p.add_argument("--password", default="")
    a = p.parse_args()

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == a.user \
            and auth_data.password.decode() == a.password
        # handled=False: aiosmtpd answers 535 itself.
        return AuthResult(success=ok, handled=False)

    kwargs = {}
    if a.mode != "plain":
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
        if a.mode == "starttls":
            kwargs.update(tls_context=ctx, require_starttls=True)
        else:
            kwargs.update(ssl_context=ctx)
    if a.password:
        kwargs.update(authenticator=authenticate, auth_required=True, auth_require_tls=a.mode != "plain")
    controller = Controller(Handler(a.maildir), hostname="127.0.0.1", port=a.port, server_hostname="localhost", **kwargs)
    controller.start()
    print("READY", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (controller.stop(), exit(0)))
    signal.pause()


if __name__ == "__main__":
    main()
