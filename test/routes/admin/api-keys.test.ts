import t from 'tap';
import type pg from 'pg';
import type { FastifyBaseLogger } from 'fastify';
import { execFile } from 'node:child_process';
import { ADMIN_KEY, buildSecondInstance, buildTestApp, createTestDatabase, migratedDatabase } from '../../helper.js';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  BOOTSTRAP_KEY_ID,
  BootstrapKeyTakenError,
  ensureBootstrapKey,
  KEY_USE_WRITE_INTERVAL_MS,
  KeyFileError,
  KeyUseRecorder,
  markKeyUsed,
} from '../../../src/store/api-keys.js';

t.test('admin API keys', async (t) => {
  const { app, admin, db } = await buildTestApp(t);

  t.test('401 without a key, with a malformed header, and with an unknown key', async (t) => {
    for (const authorization of [undefined, 'Basic abc', 'Bearer exr_nope']) {
      const res = await app.inject({ method: 'GET', url: '/admin/api-keys', headers: authorization ? { authorization } : {} });
      t.equal(res.statusCode, 401, String(authorization));
      t.match(res.json(), { statusCode: 401, error: 'Unauthorized', message: /key/ });
    }
  });

  let viewerKey = '';
  let viewerId = '';
  t.test('an admin creates a viewer key; the key is shown once and only its hash is stored', async (t) => {
    const res = await admin({ method: 'POST', url: '/admin/api-keys', payload: { name: 'support lead', role: 'viewer' } });
    t.equal(res.statusCode, 201);
    const body = res.json();
    t.match(body, { name: 'support lead', role: 'viewer', key: /^exr_/, revokedAt: null });
    viewerKey = body.key;
    viewerId = body.id;
    const stored = await db.prisma.apiKey.findUniqueOrThrow({ where: { id: viewerId } });
    t.not(stored.hash, viewerKey);
    t.notOk(JSON.stringify(stored).includes(viewerKey), 'the key itself is not stored');
    const list = await admin({ method: 'GET', url: '/admin/api-keys' });
    t.equal(list.statusCode, 200);
    t.notOk(list.body.includes(viewerKey), 'listing never shows keys');
    t.ok(list.json().some((k: { id: string }) => k.id === viewerId));
  });

  t.test('a viewer can read but gets 403 on writes', async (t) => {
    const headers = { authorization: `Bearer ${viewerKey}` };
    t.equal((await app.inject({ method: 'GET', url: '/admin/vip-lists', headers })).statusCode, 200);
    const res = await app.inject({ method: 'POST', url: '/admin/vip-lists', headers, payload: { slug: 'x', name: 'X' } });
    t.equal(res.statusCode, 403);
    t.match(res.json().message, /viewer/);
  });

  t.test('a viewer may simulate a flow (it changes nothing), and still not change the flow', async (t) => {
    const headers = { authorization: `Bearer ${viewerKey}` };
    const flow = { slug: 'viewer-try', name: 'Try', type: 'passthru', rules: [], otherwise: { branch: 'A' }, onError: { branch: 'B' } };
    t.equal((await admin({ method: 'POST', url: '/admin/flows', payload: flow })).statusCode, 201);
    const sim = await app.inject({
      method: 'POST',
      url: '/admin/flows/viewer-try/simulate',
      headers,
      payload: { endpoint: 'passthru', params: { CallSid: 'v1' } },
    });
    t.equal(sim.statusCode, 200, sim.body);
    t.match(sim.json(), { answer: { statusCode: 200 }, decidedBy: 'otherwise' });
    const put = await app.inject({ method: 'PUT', url: '/admin/flows/viewer-try', headers, payload: flow });
    t.equal(put.statusCode, 403);
    const del = await app.inject({ method: 'DELETE', url: '/admin/flows/viewer-try', headers });
    t.equal(del.statusCode, 403);
  });

  t.test('bad role and unknown fields are 400 naming the field', async (t) => {
    const bad = await admin({ method: 'POST', url: '/admin/api-keys', payload: { name: 'x', role: 'root' } });
    t.equal(bad.statusCode, 400);
    t.match(bad.json().message, /body\/role/);
    const extra = await admin({ method: 'POST', url: '/admin/api-keys', payload: { name: 'x', role: 'admin', hash: 'abc' } });
    t.equal(extra.statusCode, 400);
    t.match(extra.json().message, 'body/hash: unknown field');
  });

  t.test('revoking a key makes it fail with 401, and is audited', async (t) => {
    const res = await admin({ method: 'DELETE', url: `/admin/api-keys/${viewerId}` });
    t.equal(res.statusCode, 200);
    t.ok(res.json().revokedAt);
    const after = await app.inject({ method: 'GET', url: '/admin/api-keys', headers: { authorization: `Bearer ${viewerKey}` } });
    t.equal(after.statusCode, 401);
    const revokedAt = res.json().revokedAt as string;
    const again = await admin({ method: 'DELETE', url: `/admin/api-keys/${viewerId}` });
    t.equal(again.statusCode, 409, 'revoking twice is a conflict, not 404: the key exists');
    t.equal(again.json().message, `api key '${viewerId}' was already revoked at ${revokedAt}`, 'naming when');
    const listed = (await admin({ method: 'GET', url: '/admin/api-keys' })).json().find((k: { id: string }) => k.id === viewerId);
    t.equal(listed.revokedAt, revokedAt, 'GET lists it with that revokedAt');
    const audit = (await admin({ method: 'GET', url: '/admin/audit?entity=api-key' })).json();
    t.same(
      audit.items.map((a: { action: string; apiKeyId: string | null }) => [a.action, a.apiKeyId]),
      [
        ['revoke', BOOTSTRAP_KEY_ID],
        ['create', BOOTSTRAP_KEY_ID],
        ['create', null],
      ],
      "the viewer key's revocation and creation by the bootstrap key, and the bootstrap key's own creation by the service",
    );
    t.equal(audit.items[0].apiKeyId, BOOTSTRAP_KEY_ID, 'the audit names the key that acted');
    t.notOk(JSON.stringify(audit).includes(viewerKey), 'the audit trail never holds a key');
  });

  t.test('the bootstrap key cannot be revoked through the API', async (t) => {
    const res = await admin({ method: 'DELETE', url: `/admin/api-keys/${BOOTSTRAP_KEY_ID}` });
    t.equal(res.statusCode, 409);
    t.match(res.json().message, /ADMIN_API_KEY/);
  });

  t.test('unknown and malformed ids', async (t) => {
    const unknown = await admin({ method: 'DELETE', url: '/admin/api-keys/00000000-0000-4000-8000-00000000ffff' });
    t.equal(unknown.statusCode, 404, 'an id no key has is still 404');
    t.match(unknown.json().message, /does not exist/);
    const bad = await admin({ method: 'DELETE', url: '/admin/api-keys/nope' });
    t.equal(bad.statusCode, 400);
    t.match(bad.json().message, /params\/id/);
  });
  t.ok(ADMIN_KEY);
});

t.test('a restart with another bootstrap key is in the audit trail, by the service, with the prefixes and never the keys', async (t) => {
  // It was not: an admin credential replaced without a trace (a security review's finding).
  const { app, admin, db } = await buildTestApp(t);
  const trail = async () => (await admin({ method: 'GET', url: '/admin/audit?entity=api-key' })).json().items;
  t.match(await trail(), [{ action: 'create' }], "the first start's creation only");
  // What a restart with the same key does: nothing changed, nothing audited.
  await ensureBootstrapKey(db.pool, { configuredKey: ADMIN_KEY, dataDir: '/nonexistent' });
  t.equal((await trail()).length, 1, 'the same key again is no change');
  const replacement = 'Repl4cement-key-77';
  await ensureBootstrapKey(db.pool, { configuredKey: replacement, dataDir: '/nonexistent' });
  const res = await app.inject({ method: 'GET', url: '/admin/audit?entity=api-key', headers: { authorization: `Bearer ${replacement}` } });
  t.equal(res.statusCode, 200, 'the new key works');
  const items = res.json().items;
  t.equal(items.length, 2, 'one entry more');
  t.match(items[0], {
    apiKeyId: null,
    action: 'replace',
    entity: 'api-key',
    entityId: BOOTSTRAP_KEY_ID,
    before: { id: BOOTSTRAP_KEY_ID, name: 'bootstrap', role: 'admin', prefix: ADMIN_KEY.slice(0, 4) },
    after: { id: BOOTSTRAP_KEY_ID, name: 'bootstrap', role: 'admin', prefix: replacement.slice(0, 4), revokedAt: null },
  });
  const stored = JSON.stringify((await db.prisma.auditEntry.findMany()).map((e) => [e.before, e.after]));
  t.notOk(stored.includes(ADMIN_KEY) || stored.includes(replacement), 'neither key is stored in the trail');
  t.notOk(stored.includes('hash'), 'nor a hash');
  await ensureBootstrapKey(db.pool, { configuredKey: replacement, dataDir: '/nonexistent' });
  t.equal(await db.prisma.auditEntry.count(), 2, 'the next restart with it audits nothing more');
});

t.test(
  "the first start's bootstrap key, from ADMIN_API_KEY or generated, is in the audit trail as created by the service, with its prefix and never the key; instances starting at once audit it once",
  async (t) => {
    // It was not, while a later change of it was: the trail began with a `replace` of a credential it never showed being made.
    for (const configuredKey of ['Ch0sen-bootstrap-key-1', undefined]) {
      const db = await migratedDatabase(t);
      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'exoroute-data-'));
      // Instances given one ADMIN_API_KEY may start at once; a generated key is one instance's (its DATA_DIR).
      const starts = configuredKey ? 8 : 1;
      await Promise.all(Array.from({ length: starts }, () => ensureBootstrapKey(db.pool, { configuredKey, dataDir })));
      const { key } = await ensureBootstrapKey(db.pool, { configuredKey, dataDir });
      const { rows } = await db.pool.query<{ api_key_id: string | null; action: string; entity_id: string; before: unknown; after: { prefix: string } }>(
        `SELECT api_key_id, action, entity_id, before, after FROM audit_entries WHERE entity = 'api-key'`,
      );
      const source = configuredKey ? 'ADMIN_API_KEY' : 'generated';
      t.match(rows, [{ api_key_id: null, action: 'create', entity_id: BOOTSTRAP_KEY_ID, before: null, after: { name: 'bootstrap', role: 'admin' } }], source);
      t.equal(rows.length, 1, `${source}: one entry, however many starts`);
      t.equal(rows[0]?.after.prefix, key.slice(0, configuredKey ? 4 : 10), `${source}: its prefix`);
      t.notOk(JSON.stringify(rows).includes(key), `${source}: never the key`);
    }
  },
);

t.test('a viewer key cannot read most of an operator-chosen bootstrap key from its prefix', async (t) => {
  const { app, admin, db } = await buildTestApp(t);
  const chosen = 'Adm1nKey-9f3Q7zXw'; // 17 characters: a valid ADMIN_API_KEY (16 or more)
  const viewer = (await admin({ method: 'POST', url: '/admin/api-keys', payload: { name: 'support lead', role: 'viewer' } })).json();
  t.match(viewer.prefix, /^exr_.{6}$/, 'a generated key keeps a 10-character prefix: exr_ and 6 of its 43 random characters');
  t.ok(viewer.key.startsWith(viewer.prefix));
  const bootstrapPrefix = async () => {
    const res = await app.inject({ method: 'GET', url: '/admin/api-keys', headers: { authorization: `Bearer ${viewer.key}` } });
    t.equal(res.statusCode, 200, 'a viewer lists keys');
    return res.json().find((k: { id: string }) => k.id === BOOTSTRAP_KEY_ID).prefix as string;
  };

  // What a (re)start with ADMIN_API_KEY=<chosen> does (src/server.ts → ensureBootstrapKey).
  await ensureBootstrapKey(db.pool, { configuredKey: chosen, dataDir: '/nonexistent' });
  t.equal(await bootstrapPrefix(), 'Adm1', 'the viewer sees 4 characters of the chosen key');
  t.equal((await db.prisma.apiKey.findUniqueOrThrow({ where: { id: BOOTSTRAP_KEY_ID } })).prefix, 'Adm1', 'and only 4 are stored');

  // A row stored by an earlier version, with 10 characters, before the next start rewrites it.
  await db.prisma.apiKey.update({ where: { id: BOOTSTRAP_KEY_ID }, data: { prefix: chosen.slice(0, 10) } });
  t.equal(await bootstrapPrefix(), 'Adm1', 'a 10-character prefix stored earlier is shown cut to 4');
  await ensureBootstrapKey(db.pool, { configuredKey: chosen, dataDir: '/nonexistent' });
  t.equal((await db.prisma.apiKey.findUniqueOrThrow({ where: { id: BOOTSTRAP_KEY_ID } })).prefix, 'Adm1', 'the next start rewrites it');

  // An operator's key that merely begins like a generated one is not taken for one.
  await ensureBootstrapKey(db.pool, { configuredKey: 'exr_chosen-by-me-1', dataDir: '/nonexistent' });
  t.equal(await bootstrapPrefix(), 'exr_', 'a chosen key that begins with exr_ shows 4 characters too');
});

t.test('lastUsedAt records the use of a key', async (t) => {
  const { app, admin } = await buildTestApp(t);
  const listed = async (id: string) => (await admin({ method: 'GET', url: '/admin/api-keys' })).json().find((k: { id: string }) => k.id === id);
  /** The write is in the background: wait (briefly) for it. */
  const lastUsedOnceSet = async (id: string): Promise<string | null> => {
    for (let i = 0; i < 100; i++) {
      const { lastUsedAt } = await listed(id);
      if (lastUsedAt !== null) return lastUsedAt;
      await new Promise((r) => setTimeout(r, 20));
    }
    return null;
  };

  const viewer = (await admin({ method: 'POST', url: '/admin/api-keys', payload: { name: 'support lead', role: 'viewer' } })).json();
  t.equal(viewer.lastUsedAt, null, 'a new key has not been used');
  t.equal((await listed(viewer.id)).lastUsedAt, null, 'and listing with another key does not count as its use');

  const used = await app.inject({ method: 'GET', url: '/admin/vip-lists', headers: { authorization: `Bearer ${viewer.key}` } });
  t.equal(used.statusCode, 200);
  const first = await lastUsedOnceSet(viewer.id);
  t.not(first, null, 'the viewer key was just used');
  t.ok(Date.now() - Date.parse(first!) < 60_000, `lastUsedAt ${first} is now`);

  await app.inject({ method: 'GET', url: '/admin/flows', headers: { authorization: `Bearer ${viewer.key}` } });
  await new Promise((r) => setTimeout(r, 100));
  t.equal((await listed(viewer.id)).lastUsedAt, first, 'another use within the minute writes nothing');

  t.not(await lastUsedOnceSet(BOOTSTRAP_KEY_ID), null, 'the bootstrap key is recorded too');
});

t.test('lastUsedAt writes: at most once a minute per key, in the background, never failing', async (t) => {
  const queries: unknown[][] = [];
  const warnings: string[] = [];
  let fail = false;
  const pending: (() => void)[] = [];
  const release = () => {
    for (const resolve of pending.splice(0)) resolve();
  };
  const pool = {
    query: (_sql: string, params: unknown[]) => {
      queries.push(params);
      if (fail) return Promise.reject(new Error('connection refused'));
      return new Promise<void>((resolve) => pending.push(resolve));
    },
  } as unknown as pg.Pool;
  const log = { warn: (_obj: unknown, msg: string) => warnings.push(msg) } as unknown as FastifyBaseLogger;
  let now = 1_000_000;
  const keyUse = new KeyUseRecorder(pool, log, () => now);

  keyUse.record('a');
  keyUse.record('a');
  keyUse.record('b');
  t.same(queries, [['a'], ['b']], 'one write per key, the second use of `a` is skipped');
  now += KEY_USE_WRITE_INTERVAL_MS - 1;
  keyUse.record('a');
  t.equal(queries.length, 2, 'still within the minute');
  now += 1;
  keyUse.record('a');
  t.same(queries.at(-1), ['a'], 'a minute later it is written again');

  let closed = false;
  const closing = keyUse.close().then(() => (closed = true));
  await new Promise((r) => setImmediate(r));
  t.notOk(closed, 'close() waits for the writes in flight');
  release();
  await closing;
  t.ok(closed);

  fail = true;
  now += KEY_USE_WRITE_INTERVAL_MS;
  t.doesNotThrow(() => keyUse.record('a'), 'a failing write does not throw');
  await keyUse.close();
  t.same(warnings, ['could not record the use of an API key (lastUsedAt)'], 'it is logged as a warning');
});

t.test('markKeyUsed writes at most once a minute across instances', async (t) => {
  const db = await migratedDatabase(t);
  await ensureBootstrapKey(db.pool, { configuredKey: ADMIN_KEY, dataDir: '/nonexistent' });
  const lastUsed = async () =>
    (await db.pool.query<{ at: Date | null }>('SELECT last_used_at AS at FROM api_keys WHERE id = $1', [BOOTSTRAP_KEY_ID])).rows[0]!.at;
  const setLastUsed = (ago: string) => db.pool.query(`UPDATE api_keys SET last_used_at = now() - $2::interval WHERE id = $1`, [BOOTSTRAP_KEY_ID, ago]);

  t.equal(await lastUsed(), null);
  await markKeyUsed(db.pool, BOOTSTRAP_KEY_ID);
  t.ok(await lastUsed(), 'set when never used');
  await setLastUsed('30 seconds');
  const recent = await lastUsed();
  await markKeyUsed(db.pool, BOOTSTRAP_KEY_ID);
  t.same(await lastUsed(), recent, 'not rewritten within the minute (another instance wrote it)');
  await setLastUsed('2 minutes');
  const old = (await lastUsed())!;
  await markKeyUsed(db.pool, BOOTSTRAP_KEY_ID);
  t.ok((await lastUsed())! > old, 'rewritten after a minute');
});

t.test('two instances: two revokes of one key at once: one is 200, the other 409 naming when; one audit entry', async (t) => {
  const first = await buildTestApp(t);
  const second = await buildSecondInstance(t, first);
  for (let i = 0; i < 15; i++) {
    const id = (await first.admin({ method: 'POST', url: '/admin/api-keys', payload: { name: `race ${i}`, role: 'viewer' } })).json().id as string;
    const answers = await Promise.all([first, second].map((app) => app.admin({ method: 'DELETE', url: `/admin/api-keys/${id}` })));
    t.same(answers.map((a) => a.statusCode).sort(), [200, 409], `round ${i}`);
    const revoked = answers.find((a) => a.statusCode === 200);
    const refused = answers.find((a) => a.statusCode === 409);
    if (revoked && refused) t.equal(refused.json().message, `api key '${id}' was already revoked at ${revoked.json().revokedAt}`);
    const trail = (await first.admin({ method: 'GET', url: `/admin/audit?entity=api-key&entityId=${id}` })).json().items;
    t.same(
      trail.map((a: { action: string }) => a.action),
      ['revoke', 'create'],
      `round ${i}: revoked once`,
    );
  }
});

t.test('a key file under DATA_DIR that an operator cut short stops the start, naming the file', async (t) => {
  const { app, db } = await buildTestApp(t);
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'exoroute-keyfile-'));
  const file = path.join(dataDir, 'admin-api-key');
  for (const content of ['', '\n', '%\n', 'changeme\n', `${'k'.repeat(201)}\n`]) {
    await writeFile(file, content);
    const err = await ensureBootstrapKey(db.pool, { dataDir }).catch((e: unknown) => e);
    t.ok(err instanceof KeyFileError, `${JSON.stringify(content.slice(0, 12))}: KeyFileError`);
    const length = content.trim().length;
    t.match((err as Error).message, `${file} holds ${length} ${length === 1 ? 'character' : 'characters'}; an admin API key needs 16 to 200`);
    if (content.trim()) t.notMatch((err as Error).message, content.trim(), 'the key itself is not in the message');
  }
  const res = await app.inject({ method: 'GET', url: '/admin/api-keys', headers: { authorization: 'Bearer changeme' } });
  t.equal(res.statusCode, 401, 'the short key was not made valid');
  await writeFile(file, 'a-key-of-16-chars\n');
  t.same(await ensureBootstrapKey(db.pool, { dataDir }), { key: 'a-key-of-16-chars', generated: false, file }, 'a key of 16 or more is taken');
  const ok = await app.inject({ method: 'GET', url: '/admin/api-keys', headers: { authorization: 'Bearer a-key-of-16-chars' } });
  t.equal(ok.statusCode, 200);
});

t.test('ADMIN_API_KEY set to a key created through the API stops the start with one line naming that key, not a unique violation', async (t) => {
  const { admin, db } = await buildTestApp(t);
  const created = (await admin({ method: 'POST', url: '/admin/api-keys', payload: { name: 'deploy script', role: 'admin' } })).json();
  // An operator promotes the deploy script's key to ADMIN_API_KEY, and restarts.
  const err = await ensureBootstrapKey(db.pool, { configuredKey: created.key, dataDir: '/nonexistent' }).catch((e: unknown) => e);
  t.ok(err instanceof BootstrapKeyTakenError, `BootstrapKeyTakenError, not ${String(err)}`);
  t.match((err as Error).message, `ADMIN_API_KEY is the key of the API key 'deploy script' (id ${created.id}) created through the admin API`);
  t.notMatch((err as Error).message, created.key, 'the key itself is not in the message');
  t.equal((await admin({ method: 'DELETE', url: `/admin/api-keys/${created.id}` })).statusCode, 200);
  const revoked = await ensureBootstrapKey(db.pool, { configuredKey: created.key, dataDir: '/nonexistent' }).catch((e: unknown) => e);
  t.match((revoked as Error).message, `(id ${created.id}, revoked)`, 'a revoked one too: it would not be made valid again');
  const res = await admin({ method: 'GET', url: '/admin/api-keys' });
  t.equal(res.statusCode, 200, 'the bootstrap key in use is unchanged');
  t.equal(res.json().find((k: { id: string }) => k.id === created.id).revokedAt !== null, true, 'the revoked key stays revoked');
});

t.test('the service started on such a key file exits 2 with one line', async (t) => {
  const url = await createTestDatabase(t);
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'exoroute-keyfile-'));
  await writeFile(path.join(dataDir, 'admin-api-key'), 'changeme\n');
  const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: url, DATA_DIR: dataDir, EXOTEL_CALLBACKS_OPEN: 'true', PORT: '0' };
  delete env.ADMIN_API_KEY;
  const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    execFile(process.execPath, ['--import=tsx', 'src/server.ts'], { env, timeout: 60_000 }, (err, _stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr }),
    );
  });
  t.equal(code, 2, 'exit code 2, which the systemd unit does not restart');
  t.match(stderr, /^exoroute cannot start: .*admin-api-key holds 8 characters; an admin API key needs 16 to 200/);
  t.equal(stderr.split('\n').length, 2, 'one line, no stack trace');
  t.notMatch(stderr, 'changeme');
});
