"""A sender from outside the lab (docs/plugins.md): STARTTLS always, certificate always verified,
no MTA-STS. Run it as `downgrade-lab run --sender strict_tls_sender:StrictTlsSender`, or register
it under the entry-point group `downgrade_lab.senders`."""

from __future__ import annotations

import ssl

import aiosmtplib
import dns.asyncresolver
import dns.exception

from downgrade_lab.api import LabEnv, Message, SendReport, remaining


class StrictTlsSender:
    """Verified STARTTLS to the best MX or nothing (the strictest sender without MTA-STS)."""

    name = "strict-tls"
    capabilities: frozenset[str] = frozenset({"queue-state"})  # it can tell deferred from bounced
    loopback = True  # it follows LabEnv.address(), so it runs without --isolate too

    async def start(self, env: LabEnv) -> None:
        self.env = env
        self.tls = ssl.create_default_context(cafile=str(env.ca_file))  # the lab CA, nothing else
        self.dns = dns.asyncresolver.Resolver(configure=False)
        self.dns.nameservers, self.dns.port = [env.dns_host], env.dns_port

    async def send(self, message: Message, deadline: float) -> SendReport:
        domain = message.rcpt_to.rpartition("@")[2]
        try:
            answer = await self.dns.resolve(domain, "MX", lifetime=max(0.1, remaining(deadline)))
            mx = str(min(answer, key=lambda r: r.preference).exchange).rstrip(".")
            host, port = self.env.address(mx, 25)
            smtp = aiosmtplib.SMTP(hostname=host, port=port, start_tls=False,
                                   local_hostname="sender.test", timeout=remaining(deadline))
            await smtp.connect()
            try:
                await smtp.starttls(tls_context=self.tls, server_hostname=mx)
                await smtp.sendmail(message.mail_from, [message.rcpt_to], message.data)
            finally:
                smtp.close()
        except (aiosmtplib.SMTPException, OSError, dns.exception.DNSException) as exc:
            return SendReport("deferred", f"{type(exc).__name__}: {exc}")  # RFC 8461 §5: hold it
        return SendReport("delivered", f"verified TLS to {mx}")

    async def stop(self) -> None:
        pass  # nothing to clean up: no files, no processes
