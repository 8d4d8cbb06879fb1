# Copied from the project's shared yardstick (shared/bench/floor.py, issue 15) so that bench/ needs
# nothing outside the repository. Keep it identical to that script apart from this comment:
# the figures in docs/performance.md are ratios to it.
"""The floor of one lab step: a TLS SMTP delivery on loopback, aiosmtplib -> aiosmtpd with a
trustme certificate, in one process. Prints the median seconds per delivery over N rounds.
As a whole process (`time python floor.py 4`) it is also the floor of a one-scenario run:
the interpreter, the same libraries, a CA and a few TLS deliveries."""
import asyncio, ssl, statistics, sys, time

import aiosmtplib, trustme
from aiosmtpd.smtp import SMTP


class Sink:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK"


async def main(n: int) -> None:
    ca = trustme.CA(); leaf = ca.issue_cert("mx1.example.test")
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH); leaf.configure_cert(sctx)
    cctx = ssl.create_default_context(); ca.configure_trust(cctx)
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: SMTP(Sink(), tls_context=sctx, hostname="mx1.example.test"),
                                   "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    msg = b"From: a@sender.test\r\nTo: b@example.test\r\nSubject: x\r\n\r\nbody\r\n"
    times = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            c = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, tls_context=cctx)
            await c.connect(); await c.ehlo(); await c.starttls(server_hostname="mx1.example.test")
            await c.sendmail("a@sender.test", ["b@example.test"], msg); await c.quit()
            times.append(time.perf_counter() - t)
    finally:
        srv.close(); await srv.wait_closed()
    print(f"{statistics.median(times[2:]):.6f}")


asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 30))
