/**
 * A request whose body trickles in (or never ends) holds its connection only until
 * REQUEST_TIMEOUT_SECONDS: then 408, over a real socket on 127.0.0.1.
 */
import net from 'node:net';
import t from 'tap';
import { ADMIN_KEY, buildTestApp } from '../helper.js';

/**
 * Sends `head` and then the body one byte every 100 ms (it never ends: the Content-Length is
 * larger), until the server closes the connection or `giveUpMs` pass; resolves with what the
 * server answered and when, from the first byte sent.
 */
function trickle(port: number, head: string, giveUpMs: number): Promise<{ answer: string; ms: number; closedByServer: boolean }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    let gaveUp = false;
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    socket.on('error', () => {});
    const drip = setInterval(() => socket.writable && socket.write('a'), 100);
    const stop = setTimeout(() => {
      gaveUp = true;
      socket.destroy();
    }, giveUpMs);
    socket.on('close', () => {
      clearInterval(drip);
      clearTimeout(stop);
      resolve({ answer, ms: Date.now() - started, closedByServer: !gaveUp });
    });
    socket.write(head);
  });
}

t.test('a body that trickles in for ever: 408 within REQUEST_TIMEOUT_SECONDS on an admin route and a callback, which leaves one CDR', async (t) => {
  const ctx = await buildTestApp(t, { REQUEST_TIMEOUT_SECONDS: '1' });
  await ctx.app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = ctx.app.server.address() as net.AddressInfo;
  // 1 s, and the moment Node looks (every half of it): 1.5 s, and room for a busy machine
  const bound = 5000;

  const admin = await trickle(
    port,
    `POST /admin/flows HTTP/1.1\r\nHost: exoroute\r\nAuthorization: Bearer ${ADMIN_KEY}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"slug":"`,
    bound + 3000,
  );
  t.ok(admin.closedByServer, 'the server closed the connection');
  t.ok(admin.ms < bound, `within the bound (${admin.ms} ms)`);
  t.match(admin.answer, /^HTTP\/1\.1 408 /, '408');
  t.match(admin.answer, /did not arrive whole within 1 s/, 'the answer says why');

  const callback = await trickle(
    port,
    'POST /exotel/passthru/inbound?CallSid=slow1 HTTP/1.1\r\nHost: exoroute\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\nCallFrom=',
    bound + 3000,
  );
  t.ok(callback.closedByServer, 'the server closed the connection');
  t.ok(callback.ms < bound, `within the bound (${callback.ms} ms)`);
  t.match(callback.answer, /^HTTP\/1\.1 408 /, '408');
  // its CDR is written as the connection closes: wait for it
  let cdrs: Array<{ httpStatus: number | null }> = [];
  for (let i = 0; i < 300 && cdrs.length === 0; i++) {
    cdrs = await ctx.db.prisma.cdr.findMany({ where: { callSid: 'slow1' } });
    if (cdrs.length === 0) await new Promise((r) => setTimeout(r, 10));
  }
  t.equal(cdrs.length, 1, 'one CDR');
  t.match(cdrs[0], { endpoint: 'passthru', outcome: 'rejected', httpStatus: 408, reason: /did not arrive whole within 1 s/ }, 'saying what was answered');

  // a request that comes whole is answered as usual
  t.equal((await ctx.admin({ method: 'GET', url: '/admin/flows' })).statusCode, 200);
});
