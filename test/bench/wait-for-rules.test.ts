/**
 * The bench's wait for exoroute's rules (bench/lib/environment.ts): bounded in time even when the
 * service takes the connection and never answers.
 */
import net from 'node:net';
import t from 'tap';
import { waitForRules } from '../../bench/lib/environment.js';
import type { Service } from '../../bench/lib/proc.js';

t.test('waitForRules gives up on a service that takes the connection and never answers, instead of hanging the bench', async (t) => {
  // fetch had no timeout: a hung exoroute hung `npm run bench` (and CI's smoke run of it) forever.
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });
  const { port } = silent.address() as net.AddressInfo;
  const svc = { url: `http://127.0.0.1:${port}` } as Service;
  const t0 = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    waitForRules(svc, 1000).then(
      () => 'resolved',
      (err: Error) => err.message,
    ),
    new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve('still waiting after 10 s'), 10_000);
    }),
  ]);
  clearTimeout(timer);
  t.match(outcome, /^rules not loaded after 1 s \(answers no answer, no answer\)/, 'the run fails, saying nothing answered');
  t.ok(Date.now() - t0 < 5000, 'within its deadline (and a little)');
});
