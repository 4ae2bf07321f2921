import t from 'tap';
import pino from 'pino';
import { Writable } from 'node:stream';
import { buildTestApp } from '../../helper.js';

t.test('one log line per callback with CallSid, flow, outcome and latency; the secret never appears', async (t) => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  const secret = 'never-log-this-secret';
  const { app, admin } = await buildTestApp(t, { EXOTEL_CALLBACK_SECRET: secret }, { logger: pino({ level: 'info' }, sink) });
  await admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { slug: 'f', name: 'F', type: 'passthru', rules: [], otherwise: { branch: 'B' }, onError: { branch: 'A' } },
  });
  for (let i = 0; i < 200 && !app.rules.current?.flows.has('f'); i++) await new Promise((r) => setTimeout(r, 10));

  await app.inject({ method: 'GET', url: `/exotel/passthru/f?CallSid=log-1&token=${secret}` });
  await app.inject({
    method: 'GET',
    url: '/exotel/passthru/f?CallSid=log-2',
    headers: { authorization: `Basic ${Buffer.from(`exotel:${secret}`).toString('base64')}` },
  });
  await app.inject({ method: 'GET', url: `/exotel/passthru/f?CallSid=log-3&token=wrong-${secret}` });
  await app.inject({ method: 'GET', url: `/healthz?token=${secret}` });

  const callbacks = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'callback');
  t.same(
    callbacks.map((l) => [l.callSid, l.flow, l.outcome, l.status]),
    [
      ['log-1', 'f', 'answered', 302],
      ['log-2', 'f', 'answered', 302],
      ['log-3', 'f', 'rejected', 401],
    ],
  );
  t.ok(callbacks.every((l) => typeof l.latencyMs === 'number'));
  t.same(
    Object.keys(callbacks[0]).sort(),
    ['callSid', 'endpoint', 'flow', 'hostname', 'latencyMs', 'level', 'msg', 'outcome', 'pid', 'reqId', 'rule', 'status', 'time'],
    'each line carries the request id and exactly these fields',
  );
  t.same(
    callbacks.map((l) => [l.level, l.endpoint, l.rule]),
    [
      [30, 'passthru', null],
      [30, 'passthru', null],
      [30, 'passthru', null],
    ],
  );
  t.equal(new Set(callbacks.map((l) => l.reqId)).size, 3, 'one request id per callback');
  t.ok(
    lines.some((l) => l.includes('/healthz?token=[redacted]')),
    'other requests are logged with the token redacted',
  );
  t.notOk(lines.join('\n').includes(secret), 'the secret is in no log line');
});
