// Node's smtp-server (the server half of Nodemailer) for rawsmtp's interop tests.
//
//   node server.js CONFIG.json
//
// CONFIG: {"host": "127.0.0.1", "smtp_port": N, "lmtp_port": N, "cert": path, "key": path,
//          "users": {"user": "password"}, "tokens": {"user": "token"}, "size": bytes, "dir": path}
// Listens on loopback only and never relays: every accepted message is written to DIR as
// node-<n>.eml (the bytes as received, dot-unstuffed) and node-<n>.json (the envelope).
'use strict';

const fs = require('fs');
const path = require('path');
const { SMTPServer } = require('smtp-server');

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
if (config.host !== '127.0.0.1' && config.host !== '::1') {
    throw new Error('interop servers listen on loopback only');
}
fs.mkdirSync(config.dir, { recursive: true });
let counter = 0;

function onAuth(auth, session, callback) {
    const user = auth.username;
    if (auth.method === 'XOAUTH2') {
        if (config.tokens[user] !== undefined && config.tokens[user] === auth.accessToken) {
            return callback(null, { user });
        }
        return callback(null, { data: { status: '401', schemes: 'bearer', scope: 'mail' } });
    }
    if (config.users[user] !== undefined && config.users[user] === auth.password) {
        return callback(null, { user });
    }
    return callback(new Error('Invalid username or password'));
}

function record(mode, stream, session, callback) {
    const chunks = [];
    stream.on('data', chunk => chunks.push(chunk));
    stream.on('end', () => {
        if (stream.sizeExceeded) {
            const error = new Error('Message exceeds the fixed maximum message size');
            error.responseCode = 552;
            return callback(error);
        }
        counter += 1;
        const stem = path.join(config.dir, `node-${mode}-${process.pid}-${counter}`);
        const envelope = session.envelope;
        const meta = {
            server: 'node-' + mode,
            mail_from: envelope.mailFrom.address,
            mail_params: envelope.mailFrom.args || {},
            rcpt_to: envelope.rcptTo.map(r => r.address),
            rcpt_params: Object.fromEntries(envelope.rcptTo.map(r => [r.address, r.args || {}])),
            dsn: envelope.dsn || null,
            tls: Boolean(session.secure),
            user: session.user || null,
        };
        fs.writeFileSync(stem + '.eml', Buffer.concat(chunks));
        fs.writeFileSync(stem + '.json.tmp', JSON.stringify(meta));
        fs.renameSync(stem + '.json.tmp', stem + '.json'); // the .json appears last, complete
        if (mode === 'lmtp') {
            // One reply per recipient, as LMTP wants; a full@ mailbox refuses, temporarily.
            return callback(null, envelope.rcptTo.map(r => {
                if (!r.address.startsWith('full@')) return `<${r.address}> delivered as ${counter}`;
                const error = new Error('4.2.2 Mailbox full');
                error.responseCode = 452;
                return error;
            }));
        }
        return callback(null, `Ok: queued as NODE${counter}`);
    });
}

function start(mode, port) {
    const server = new SMTPServer({
        lmtp: mode === 'lmtp',
        name: 'node.interop.test',
        banner: `rawsmtp interop (smtp-server ${mode})`,
        key: fs.readFileSync(config.key),
        cert: fs.readFileSync(config.cert),
        size: config.size,
        hideDSN: false, // off by default in smtp-server: the tests check DSN parameters
        hideENHANCEDSTATUSCODES: false,
        authMethods: ['PLAIN', 'LOGIN', 'XOAUTH2'],
        authOptional: true,
        allowInsecureAuth: false,
        maxClients: 100,
        logger: false,
        onAuth,
        onData: (stream, session, callback) => record(mode, stream, session, callback),
    });
    server.on('error', error => console.error(`smtp-server ${mode}:`, error.message));
    server.listen(port, config.host, () => console.log(`smtp-server ${mode} on ${config.host}:${port}`));
}

start('smtp', config.smtp_port);
start('lmtp', config.lmtp_port);
