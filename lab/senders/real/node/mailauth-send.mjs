// Downgrade Lab's `mailauth` sender: one delivery the way ZoneMTA makes it.
//
// mx-connect resolves the MX hosts, fetches and caches the MTA-STS policy through mailauth and
// drops MX hosts the policy does not list (in enforce mode); like ZoneMTA, we then turn
// `mode: enforce` into required, verified TLS on nodemailer's SMTP connection, and use
// opportunistic, unverified TLS otherwise.
//
// Usage: node mailauth-send.mjs --from ADDR --to ADDR --message FILE --cache FILE
// Prints one JSON line: {"state": "delivered|deferred|bounced", "detail": "...", ...}.
// The policy cache is a JSON file, so the steps of one scenario share it and the next
// scenario (a new file) starts cold. DNS comes from /etc/resolv.conf (c-ares), the lab CA from
// NODE_EXTRA_CA_CERTS.

import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

const require = createRequire(import.meta.url);
const mxConnect = require('mx-connect');
const SMTPConnection = require('nodemailer/lib/smtp-connection');

const TIMEOUT_MS = 8000;
const { values: args } = parseArgs({
    options: {
        from: { type: 'string' },
        to: { type: 'string' },
        message: { type: 'string' },
        cache: { type: 'string' }
    }
});

function fileCache(path) {
    const load = () => (existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : {});
    return {
        async get(domain) {
            return load()[domain] || false;
        },
        async set(domain, policy) {
            const all = load();
            // errors do not survive JSON: keep their message
            all[domain] = JSON.parse(JSON.stringify(policy, (k, v) => (v instanceof Error ? String(v.message) : v)));
            writeFileSync(path, JSON.stringify(all));
        }
    };
}

function report(state, detail, extra = {}) {
    process.stdout.write(JSON.stringify({ state, detail, ...extra }) + '\n');
}

function send(conn, enforce, from, to, body) {
    return new Promise((resolve, reject) => {
        const smtp = new SMTPConnection({
            connection: conn.socket,
            name: 'sender.test',
            requireTLS: enforce,
            opportunisticTLS: !enforce,
            tls: { servername: conn.hostname, rejectUnauthorized: enforce },
            connectionTimeout: TIMEOUT_MS,
            greetingTimeout: TIMEOUT_MS,
            socketTimeout: TIMEOUT_MS
        });
        let done = false;
        const finish = (err, info) => {
            if (done) return;
            done = true;
            err ? reject(err) : resolve(info);
        };
        smtp.once('error', err => finish(err));
        smtp.connect(() => {
            smtp.send({ from, to: [to] }, body, (err, info) => {
                const secure = smtp.secure;
                if (err) return finish(err);
                smtp.quit();
                finish(null, { ...info, secure });
            });
        });
    });
}

const logs = [];
const MAX_ATTEMPTS = 8; // MX hosts tried in one delivery, at most

function isPermanent(err) {
    // A 5xx to the envelope or the data is the receiver's permanent answer. A TLS or policy
    // failure is not: RFC 8461 §5 has the sender treat it as temporary, so the message stays
    // queued (this is also where a 502 to a STARTTLS that was never offered lands).
    const tlsOrPolicy = err.code === 'ETLS' || err.category === 'policy';
    return !tlsOrPolicy && (err.temporary === false || (err.responseCode >= 500 && err.responseCode < 600) || err.code === 'ENULLMX');
}

try {
    const domain = args.to.split('@').pop();
    const body = readFileSync(args.message);
    const cache = fileCache(args.cache);
    // mx-connect hands back the first MX it could connect to; when the SMTP session there
    // fails (say, no STARTTLS under enforce), the next attempt skips that address through
    // `ignoreMXHosts`, and `mxLastError` is what it reports once every host is skipped.
    const ignoreMXHosts = [];
    let lastError = null;
    for (let attempt = 0; ; attempt++) {
        const conn = await mxConnect({
            target: domain,
            port: 25,
            maxConnectTime: TIMEOUT_MS,
            dnsOptions: { ignoreIPv6: true },
            ignoreMXHosts,
            mxLastError: lastError || undefined,
            mtaSts: { enabled: true, cache, logger: entry => logs.push(entry) }
        });
        const policy = conn.policyMatch || { mode: 'none' };
        const enforce = policy.mode === 'enforce';
        try {
            const info = await send(conn, enforce, args.from, args.to, body);
            const how = `${conn.hostname}[${conn.host}], ${info.secure ? 'TLS' : 'plaintext'}, policy ${policy.mode}`;
            report('delivered', `${info.response} (${how})`, { mx: conn.hostname, tls: !!info.secure, policy, log: logs });
            break;
        } catch (err) {
            err.mxHost = `${conn.hostname}[${conn.host}]`;
            if (isPermanent(err) || attempt + 1 >= MAX_ATTEMPTS) throw err;
            lastError = err;
            ignoreMXHosts.push(conn.host);
        }
    }
} catch (err) {
    const words = String(err.response || err.message || err).split('\n')[0];
    report(isPermanent(err) ? 'bounced' : 'deferred', err.mxHost ? `${err.mxHost}: ${words}` : words, {
        code: err.code || null,
        category: err.category || null,
        log: logs
    });
}
