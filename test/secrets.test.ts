/**
 * No secret in any error, log line or start-up message: the callback secret, the admin and metrics
 * tokens, and the database password, checked on the configuration errors and on the real server
 * process's whole output while it starts, answers right and wrong credentials, and stops.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig } from '../src/config.js';
import { ADMIN_KEY, listeningPort, migratedDatabase } from './helper.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function configErrorOf(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  throw new Error('no configuration error');
}

t.test('a configuration error names a secret variable and what to fix, never its value', async (t) => {
  const msg = configErrorOf({ EXOTEL_CALLBACK_SECRET: 'Zq9abc', ADMIN_API_KEY: 'Kx7-short', METRICS_TOKEN: 'Mt4short' });
  t.match(msg, 'EXOTEL_CALLBACK_SECRET=(6 characters, not shown): must be 16 to 200 characters long');
  t.match(msg, 'ADMIN_API_KEY=(9 characters, not shown): must be 16 to 200 characters long');
  t.match(msg, 'METRICS_TOKEN=(8 characters, not shown): must be 16 to 200 characters long');
  for (const secret of ['Zq9abc', 'Kx7-short', 'Mt4short']) t.notMatch(msg, secret, `${secret} not shown`);
  const url = configErrorOf({ DATABASE_URL: 'mysql://exo:Pw0rd-hidden@db:3306/exo' });
  t.match(url, 'DATABASE_URL="mysql://exo:***@db:3306/exo": must be a Postgres URL');
  t.notMatch(url, 'Pw0rd-hidden');
});

t.test('the real server refuses a bad secret without printing it', async (t) => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: { ...process.env, EXOTEL_CALLBACK_SECRET: 'Zq9abc', DATABASE_URL: 'postgresql://u:Pw0rd-hidden@127.0.0.1:1/x' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  t.equal(code, 2, 'exits 2, the configuration error');
  t.match(output, 'EXOTEL_CALLBACK_SECRET=(6 characters, not shown)');
  t.notMatch(output, 'Zq9abc');
});

t.test('start-up, callbacks with right and wrong secrets, admin and metrics requests, shutdown: no secret in the output', async (t) => {
  const db = await migratedDatabase(t);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'exoroute-secrets-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const secrets = {
    EXOTEL_CALLBACK_SECRET: 'cb-Secret-7f3a9-e21d',
    EXOTEL_CALLBACK_SECRET_PREVIOUS: 'cb-Old-Secret-5d2e-b7c1',
    METRICS_TOKEN: 'metrics-Token-4b8c2d',
    ADMIN_API_KEY: ADMIN_KEY,
  };
  const server = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: {
      ...process.env,
      ...secrets,
      DATABASE_URL: db.url,
      PORT: '0',
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      PUBLIC_URL: 'https://exo.example.com',
      LOG_LEVEL: 'debug',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  server.stdout.on('data', (c: Buffer) => (output += c.toString()));
  server.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((r) => server.on('exit', r));
  t.teardown(() => {
    if (server.exitCode === null) server.kill('SIGKILL');
  });
  const port = await listeningPort(t, server, () => output);
  const base = `http://127.0.0.1:${port}`;
  for (
    let i = 0;
    i < 300 &&
    !(await fetch(`${base}/readyz`).then(
      (r) => r.ok,
      () => false,
    ));
    i++
  )
    await sleep(100);

  const admin = (method: string, url: string, body?: unknown, key = ADMIN_KEY) =>
    fetch(`${base}${url}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
  t.equal(
    (await admin('POST', '/admin/flows', { slug: 'f', name: 'F', type: 'passthru', rules: [], otherwise: { branch: 'A' }, onError: { branch: 'A' } })).status,
    201,
  );
  const flow = await (await admin('GET', '/admin/flows/f')).text();
  t.equal((await admin('GET', '/admin/flows', undefined, `${ADMIN_KEY}x`)).status, 401, 'a wrong key');
  for (let i = 0; i < 50; i++) {
    const ok = await fetch(`${base}/exotel/passthru/f?CallSid=s${i}&token=${secrets.EXOTEL_CALLBACK_SECRET}`).then((r) => r.status === 200);
    if (ok) break;
    await sleep(20);
  }
  const callbacks = [
    await fetch(`${base}/exotel/passthru/f?CallSid=w1&token=${secrets.EXOTEL_CALLBACK_SECRET}x`),
    await fetch(`${base}/exotel/passthru/f?CallSid=w2`, {
      headers: { authorization: `Basic ${Buffer.from(`exotel:${secrets.EXOTEL_CALLBACK_SECRET}`).toString('base64')}` },
    }),
    await fetch(`${base}/exotel/connect/none?CallSid=w3&token=${secrets.EXOTEL_CALLBACK_SECRET}`),
    await fetch(`${base}/admin/flows?token=${secrets.EXOTEL_CALLBACK_SECRET}`),
    await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${secrets.METRICS_TOKEN}x` } }),
    // Mid-rotation: the previous secret is accepted (and logged as such, naming the flow), in any form.
    await fetch(`${base}/exotel/passthru/f?CallSid=p1&token=${secrets.EXOTEL_CALLBACK_SECRET_PREVIOUS}`),
    await fetch(`${base}/exotel/passthru/f?CallSid=p2`, {
      headers: { authorization: `Basic ${Buffer.from(`exotel:${secrets.EXOTEL_CALLBACK_SECRET_PREVIOUS}`).toString('base64')}` },
    }),
    await fetch(`${base}/exotel/passthru/f?CallSid=p3&secret=${secrets.EXOTEL_CALLBACK_SECRET_PREVIOUS}`),
    await fetch(`${base}/admin/flows/${secrets.EXOTEL_CALLBACK_SECRET_PREVIOUS}`),
  ];
  t.same(
    callbacks.map((r) => r.status),
    [401, 200, 404, 401, 401, 200, 200, 401, 401],
  );
  const bodies = (await Promise.all(callbacks.map((r) => r.text()))).join('\n');
  server.kill('SIGTERM');
  t.equal(await exited, 0);

  t.match(output, '"msg":"callback"', 'the output holds the callback log lines');
  t.match(output, /"flow":"f".*authenticated with EXOTEL_CALLBACK_SECRET_PREVIOUS/, 'the previous secret flagged, naming the flow');
  t.notMatch(flow, secrets.EXOTEL_CALLBACK_SECRET_PREVIOUS, "a flow's Exotel URLs carry the current secret only");
  for (const [name, secret] of Object.entries(secrets)) {
    t.notMatch(output, secret, `${name} not in the start-up or log output`);
    t.notMatch(bodies, secret, `${name} not in any answer`);
  }
  t.match(flow, `token=${secrets.EXOTEL_CALLBACK_SECRET}`, "the one place it is shown: an admin key reading a flow's Exotel URLs");
});

/** Every text a log line holds, with Buffers (`{"type":"Buffer","data":[…]}`) decoded. */
function logText(output: string): string {
  const texts: string[] = [output];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      const o = v as { type?: unknown; data?: unknown };
      if (o.type === 'Buffer' && Array.isArray(o.data)) texts.push(Buffer.from(o.data as number[]).toString('latin1'));
      else Object.values(o).forEach(walk);
    }
  };
  for (const line of output.split('\n')) {
    try {
      walk(JSON.parse(line));
    } catch {
      // not a log line
    }
  }
  return texts.join('\n');
}

t.test('LOG_LEVEL=trace: a request Node cannot parse is logged without its bytes (token, Basic password, bearer keys)', async (t) => {
  const db = await migratedDatabase(t);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'exoroute-secrets-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const secrets = { EXOTEL_CALLBACK_SECRET: 'cb-Secret-9d2e4-a07b', METRICS_TOKEN: 'metrics-Token-6c1f0e', ADMIN_API_KEY: ADMIN_KEY };
  const server = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: { ...process.env, ...secrets, DATABASE_URL: db.url, PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'trace' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  server.stdout.on('data', (c: Buffer) => (output += c.toString()));
  server.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((r) => server.on('exit', r));
  t.teardown(() => {
    if (server.exitCode === null) server.kill('SIGKILL');
  });
  const port = await listeningPort(t, server, () => output);
  const base = `http://127.0.0.1:${port}`;
  for (
    let i = 0;
    i < 300 &&
    !(await fetch(`${base}/readyz`).then(
      (r) => r.ok,
      () => false,
    ));
    i++
  )
    await sleep(100);

  /** A request with a header Node's parser refuses (a control character in its value): the answer. */
  const malformed = (lines: string[]) =>
    new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      let answer = '';
      socket.on('data', (c: Buffer) => (answer += c.toString()));
      socket.on('close', () => resolve(answer));
      socket.on('error', reject);
      socket.end([...lines, 'Host: exo.example.com', 'X-Broken: a\u0001b', '', ''].join('\r\n'));
    });
  const basic = Buffer.from(`exotel:${secrets.EXOTEL_CALLBACK_SECRET}`).toString('base64');
  const answers = [
    await malformed([`GET /exotel/passthru/f?CallSid=m1&token=${secrets.EXOTEL_CALLBACK_SECRET} HTTP/1.1`]),
    await malformed(['GET /exotel/passthru/f?CallSid=m2 HTTP/1.1', `Authorization: Basic ${basic}`]),
    await malformed(['GET /admin/flows HTTP/1.1', `Authorization: Bearer ${ADMIN_KEY}`]),
    await malformed(['GET /metrics HTTP/1.1', `Authorization: Bearer ${secrets.METRICS_TOKEN}`]),
  ];
  for (const answer of answers) t.match(answer, /^HTTP\/1\.1 400 /, 'refused by the HTTP parser');
  server.kill('SIGTERM');
  t.equal(await exited, 0);

  t.match(output, /"callSid":"m1",[^\n]*"status":400,[^\n]*"msg":"callback"/, 'the refused callbacks are logged as callbacks');
  t.match(output, /"callSid":"m2",[^\n]*"status":400,[^\n]*"msg":"callback"/);
  t.equal(output.match(/"msg":"request refused by the HTTP parser/g)?.length, 2, 'and the other refused requests');
  const text = logText(output);
  for (const [name, secret] of Object.entries({ ...secrets, basic })) t.notMatch(text, secret, `${name} not in the log, not even as bytes`);
});
