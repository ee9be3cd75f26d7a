// A local Sigstore stack for xtask's it tests (tests/it/keyless.rs), on 127.0.0.1 only.
//
// The services are the Sigstore project's own mock implementations (npm @sigstore/mock, the code
// sigstore-js tests against): Fulcio issues real X.509 certificates with an embedded SCT from a
// CT log, Rekor returns real log entries with a signed entry timestamp and an inclusion proof with
// a signed checkpoint, the TSA answers RFC 3161 timestamp requests. This server only puts them behind HTTP and adds what a CI runner would
// provide: a GitHub-Actions-like OIDC token endpoint (ACTIONS_ID_TOKEN_REQUEST_URL) and the trust
// material a verifier needs (trusted_root.json, and the client trust config sigstore-python reads).
//
//   node stack.js --dir DIR [--identity URI]
//
// Writes DIR/trusted_root.json, DIR/trust_config.json and, once listening, DIR/stack.json
// ({"url", "issuer", "identity", "tokenUrl"}; written temp + rename). Exits when stdin closes, so
// a test that dies takes the stack with it.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const path = require('path');
const jose = require('jose');
const mock = require('@sigstore/mock');

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt;
}

const dir = arg('--dir');
if (!dir) {
  console.error('usage: node stack.js --dir DIR [--identity URI]');
  process.exit(2);
}
const identity = arg(
  '--identity',
  'https://github.com/multus-rs/multus-rs/.github/workflows/release.yml@refs/heads/main',
);

function writeAtomic(file, value) {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(value, null, 2) + '\n');
  fs.renameSync(tmp, file);
}

const pair = () => crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const b64 = (buf) => Buffer.from(buf.buffer ? Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength) : buf).toString('base64');

async function main() {
  const server = http.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  const issuer = `${url}/oidc`;

  const ctlog = await mock.initializeCTLog(pair());
  const ca = await mock.initializeCA(pair(), ctlog);
  const tlog = await mock.initializeTLog(url, pair());
  const tsa = await mock.initializeTSA(pair());
  const fulcio = mock.fulcioHandler(ca);
  const rekor = mock.rekorHandler(tlog);
  const timestamp = mock.tsaHandler(tsa);
  const oidcKey = await jose.generateKeyPair('ES256');
  const jwk = { ...(await jose.exportJWK(oidcKey.publicKey)), kid: 'stack', alg: 'ES256', use: 'sig' };

  // Valid from an hour ago: certificates are issued "now" and must fall inside the window.
  const validFor = { start: new Date(Date.now() - 3600 * 1000).toISOString() };
  const keyId = (spki) => crypto.createHash('sha256').update(spki).digest('base64');
  // A transparency log (Rekor or the CT log) as trusted_root.json names one.
  const log = (publicKey, logId) => ({
    baseUrl: url,
    hashAlgorithm: 'SHA2_256',
    publicKey: { rawBytes: b64(publicKey), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor },
    logId: { keyId: logId },
  });
  const trustedRoot = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [log(tlog.publicKey, keyId(tlog.publicKey))],
    certificateAuthorities: [
      {
        subject: { organization: 'sigstore.mock', commonName: 'sigstore' },
        uri: url,
        certChain: { certificates: [{ rawBytes: b64(ca.rootCertificate) }] },
        validFor,
      },
    ],
    ctlogs: [log(ctlog.publicKey, b64(ctlog.logID))],
    timestampAuthorities: [
      {
        subject: { organization: 'sigstore.mock', commonName: 'tsa' },
        uri: url,
        certChain: { certificates: [{ rawBytes: b64(tsa.intCertificate) }, { rawBytes: b64(tsa.rootCertificate) }] },
        validFor,
      },
    ],
  };
  const signingConfig = {
    mediaType: 'application/vnd.dev.sigstore.signingconfig.v0.2+json',
    caUrls: [{ url, majorApiVersion: 1, validFor, operator: 'local' }],
    oidcUrls: [{ url: issuer, majorApiVersion: 1, validFor, operator: 'local' }],
    rekorTlogUrls: [{ url, majorApiVersion: 1, validFor, operator: 'local' }],
    rekorTlogConfig: { selector: 'ANY' },
    tsaUrls: [{ url: `${url}${timestamp.path}`, majorApiVersion: 1, validFor, operator: 'local' }],
    tsaConfig: { selector: 'ANY' },
  };
  fs.mkdirSync(dir, { recursive: true });
  writeAtomic(path.join(dir, 'trusted_root.json'), trustedRoot);
  writeAtomic(path.join(dir, 'trust_config.json'), {
    mediaType: 'application/vnd.dev.sigstore.clienttrustconfig.v0.1+json',
    trustedRoot,
    signingConfig,
  });

  // GitHub's token endpoint: GET with `Authorization: bearer <request token>` and ?audience=.
  async function token(query, auth) {
    if (!/^bearer \S+/i.test(auth || '')) {
      return [401, { message: 'no bearer request token' }];
    }
    const now = Math.floor(Date.now() / 1000);
    const jwt = await new jose.SignJWT({
      sub: identity,
      repository: 'multus-rs/multus-rs',
      ref: 'refs/heads/main',
      workflow_ref: 'multus-rs/multus-rs/.github/workflows/release.yml@refs/heads/main',
      event_name: 'push',
    })
      .setProtectedHeader({ alg: 'ES256', kid: 'stack' })
      .setIssuer(issuer)
      .setAudience(query.get('audience') || 'sigstore')
      .setIssuedAt(now)
      .setNotBefore(now - 5)
      .setExpirationTime(now + 300)
      .sign(oidcKey.privateKey);
    return [200, { count: 1, value: jwt }];
  }

  // Rekor stores a `dsse` proposal as its canonical body (hashes of the envelope as submitted and
  // of its payload, each signature with its verifier); @sigstore/mock logs proposals verbatim, so
  // the stack does what Rekor's dsse v0.0.1 type does. Other kinds (hashedrekord) pass unchanged.
  function canonicalEntry(body) {
    const e = JSON.parse(body);
    if (e.kind !== 'dsse' || !e.spec || !e.spec.proposedContent) return body;
    const pc = e.spec.proposedContent;
    const env = JSON.parse(pc.envelope);
    const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');
    return JSON.stringify({
      apiVersion: '0.0.1',
      kind: 'dsse',
      spec: {
        envelopeHash: { algorithm: 'sha256', value: sha(Buffer.from(pc.envelope)) },
        payloadHash: { algorithm: 'sha256', value: sha(Buffer.from(env.payload, 'base64')) },
        signatures: env.signatures.map((sig) => ({ signature: sig.sig, verifier: pc.verifiers[0] })),
      },
    });
  }

  server.on('request', (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const u = new URL(req.url, url);
      const send = (status, body, type = 'application/json') => {
        const text = typeof body === 'string' ? body : JSON.stringify(body);
        res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(text) });
        res.end(text);
      };
      try {
        const body = Buffer.concat(chunks).toString();
        if (req.method === 'POST' && u.pathname === fulcio.path) {
          const r = await fulcio.fn(body);
          send(r.statusCode, r.response, r.contentType || 'text/plain');
        } else if (req.method === 'POST' && u.pathname === rekor.path) {
          const r = await rekor.fn(canonicalEntry(body));
          send(r.statusCode, r.response, r.contentType || 'text/plain');
        } else if (req.method === 'POST' && u.pathname === timestamp.path) {
          const r = await timestamp.fn(Buffer.concat(chunks));
          res.writeHead(r.statusCode, { 'Content-Type': r.contentType || 'application/timestamp-reply' });
          res.end(Buffer.from(r.response));
        } else if (req.method === 'GET' && u.pathname === '/oidc/token') {
          const [status, v] = await token(u.searchParams, req.headers.authorization);
          send(status, v);
        } else if (req.method === 'GET' && u.pathname === '/oidc/.well-known/openid-configuration') {
          send(200, { issuer, jwks_uri: `${issuer}/jwks`, id_token_signing_alg_values_supported: ['ES256'] });
        } else if (req.method === 'GET' && u.pathname === '/oidc/jwks') {
          send(200, { keys: [jwk] });
        } else {
          send(404, { message: `no route for ${req.method} ${u.pathname}` });
        }
      } catch (e) {
        send(500, { message: String(e && e.message) });
      }
    });
  });

  writeAtomic(path.join(dir, 'stack.json'), { url, issuer, identity, tokenUrl: `${issuer}/token` });
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
