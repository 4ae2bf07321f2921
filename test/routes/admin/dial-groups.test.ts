import t from 'tap';
import { buildTestApp } from '../../helper.js';
import { BOOTSTRAP_KEY_ID } from '../../../src/store/api-keys.js';
import { DEFAULT_CONNECT } from '../../../src/exotel/connect.js';

const EXOTEL_DEFAULTS = {
  record: false,
  recordingChannels: 'single',
  maxRingingDuration: 30,
  maxConversationDuration: 900,
  musicOnHold: { type: 'default_tone' },
  outgoingPhoneNumber: null,
  fetchAfterAttempt: true,
  maxParallelAttempts: 5,
  startCallPlayback: null,
};

const group = (over: Record<string, unknown> = {}) => ({
  slug: 'sales',
  name: 'Sales',
  strategy: 'round_robin',
  members: [
    { number: '09812345678', name: 'Asha', priority: 2 },
    { number: '919812345679', name: 'Ravi', priority: 1, weight: 3 },
    { number: '+919812345670', name: 'Meera', priority: 2, active: false },
  ],
  ...over,
});

t.test('dial groups admin API', async (t) => {
  const { admin, db } = await buildTestApp(t);
  const post = (payload: object) => admin({ method: 'POST', url: '/admin/dial-groups', payload });
  await admin({
    method: 'POST',
    url: '/admin/schedules',
    payload: { slug: 'day', name: 'Day shift', weekly: [{ day: 'mon', open: '09:00', close: '18:00' }] },
  });
  await admin({
    method: 'POST',
    url: '/admin/schedules',
    payload: { slug: 'night', name: 'Night shift', weekly: [{ day: 'mon', open: '18:00', close: '09:00' }] },
  });

  t.test('without a bearer key every route is 401', async (t) => {
    for (const [method, url] of [
      ['GET', '/admin/dial-groups'],
      ['POST', '/admin/dial-groups'],
      ['PATCH', '/admin/dial-groups/sales/members/09812345678'],
    ]) {
      t.equal((await admin({ method: method!, url: url!, payload: {}, headers: { authorization: '' } })).statusCode, 401, `${method} ${url}`);
    }
  });

  t.test(
    'create answers 201: numbers in E.164 from national, 91… and +91… forms, members by priority then number, Connect and sticky defaults filled',
    async (t) => {
      const res = await post(group({ sticky: { enabled: true } }));
      t.equal(res.statusCode, 201);
      const body = res.json();
      t.match(body, { slug: 'sales', name: 'Sales', strategy: 'round_robin', sticky: { enabled: true, lookbackDays: 30 } });
      t.strictSame(body.members, [
        { number: '+919812345679', name: 'Ravi', priority: 1, weight: 3, active: true, schedule: null },
        { number: '+919812345670', name: 'Meera', priority: 2, weight: 1, active: false, schedule: null },
        { number: '+919812345678', name: 'Asha', priority: 2, weight: 1, active: true, schedule: null },
      ]);
      t.strictSame(body.connect, EXOTEL_DEFAULTS);
      t.strictSame(DEFAULT_CONNECT, EXOTEL_DEFAULTS, 'the exported defaults are the ones answered');
      t.ok(Date.parse(body.createdAt) && Date.parse(body.updatedAt), 'timestamps are ISO instants');
      const stored = await db.prisma.dialGroup.findUniqueOrThrow({ where: { slug: 'sales' }, include: { members: true } });
      t.strictSame(stored.connect, EXOTEL_DEFAULTS, 'connect is stored complete, not only answered');
      t.equal(stored.members.length, 3, 'members are rows of dial_group_members');
    },
  );

  t.test('without sticky a group answers sticky null', async (t) => {
    const res = await post(group({ slug: 'plain', members: [] }));
    t.equal(res.statusCode, 201);
    t.equal(res.json().sticky, null);
    t.equal((await db.prisma.dialGroup.findUniqueOrThrow({ where: { slug: 'plain' } })).sticky, null, 'stored as SQL NULL');
  });

  t.test('every Connect setting given within the limits is kept as given', async (t) => {
    const connect = {
      record: true,
      recordingChannels: 'dual',
      maxRingingDuration: 60,
      maxConversationDuration: 4500,
      musicOnHold: { type: 'custom_tone', value: 'https://example.com/hold.wav' },
      outgoingPhoneNumber: '+918047115777',
      fetchAfterAttempt: false,
      maxParallelAttempts: 10,
      startCallPlayback: { playbackTo: 'callee', type: 'audio_url', value: 'http://example.com/whisper.wav' },
    };
    const res = await post(group({ slug: 'full', strategy: 'parallel', connect }));
    t.equal(res.statusCode, 201);
    t.strictSame(res.json().connect, connect);
    const partial = await post(group({ slug: 'partial', connect: { record: true, musicOnHold: { type: 'operator_tone' } } }));
    t.strictSame(partial.json().connect, { ...EXOTEL_DEFAULTS, record: true, musicOnHold: { type: 'operator_tone' } }, 'the rest filled with defaults');
    const text = await post(group({ slug: 'text', connect: { startCallPlayback: { playbackTo: 'both', type: 'text', value: 'This call is recorded' } } }));
    t.equal(text.statusCode, 201, 'a text playback needs no URL');
  });

  const limits: Array<[string, Record<string, unknown>, RegExp]> = [
    ['maxRingingDuration 61 (Exotel: up to 60 s)', { maxRingingDuration: 61 }, /^body\/connect\/maxRingingDuration: .*60/],
    ['maxRingingDuration 0', { maxRingingDuration: 0 }, /^body\/connect\/maxRingingDuration: /],
    ['maxConversationDuration 4501 (Exotel: up to 4500 s)', { maxConversationDuration: 4501 }, /^body\/connect\/maxConversationDuration: .*4500/],
    ["recordingChannels 'stereo'", { recordingChannels: 'stereo' }, /^body\/connect\/recordingChannels: /],
    ['maxParallelAttempts 0 (Exotel: 1–10)', { maxParallelAttempts: 0 }, /^body\/connect\/maxParallelAttempts: .*1/],
    ['maxParallelAttempts 11 (Exotel: 1–10)', { maxParallelAttempts: 11 }, /^body\/connect\/maxParallelAttempts: .*10/],
    [
      "musicOnHold type 'jazz'",
      { musicOnHold: { type: 'jazz' } },
      /^body\/connect\/musicOnHold\/type: must be one of custom_tone, default_tone, operator_tone$/,
    ],
    [
      'musicOnHold default_tone with a value',
      { musicOnHold: { type: 'default_tone', value: 'https://example.com/a.wav' } },
      /^body\/connect\/musicOnHold\/(value|type): /,
    ],
    ['musicOnHold custom_tone without a value', { musicOnHold: { type: 'custom_tone' } }, /^body\/connect\/musicOnHold\/value: is required/],
    [
      'musicOnHold custom_tone with a value that is no http(s) URL',
      { musicOnHold: { type: 'custom_tone', value: 'ftp://x/y.wav' } },
      /^body\/connect\/musicOnHold\/value: /,
    ],
    [
      "startCallPlayback playbackTo 'caller'",
      { startCallPlayback: { playbackTo: 'caller', type: 'text', value: 'hi' } },
      /^body\/connect\/startCallPlayback\/playbackTo: /,
    ],
    ["startCallPlayback type 'video'", { startCallPlayback: { playbackTo: 'both', type: 'video', value: 'hi' } }, /^body\/connect\/startCallPlayback\/type: /],
    [
      'startCallPlayback audio_url with a value that is no http(s) URL',
      { startCallPlayback: { playbackTo: 'both', type: 'audio_url', value: 'hello there' } },
      /^body\/connect\/startCallPlayback\/value: .*http/,
    ],
    ["outgoingPhoneNumber '08047115777' (not E.164)", { outgoingPhoneNumber: '08047115777' }, /^body\/connect\/outgoingPhoneNumber: .*E\.164/],
    ['an unknown Connect setting', { ringTimeout: 5 }, /^body\/connect\/ringTimeout: unknown field/],
  ];
  for (const [what, connect, message] of limits) {
    t.test(`Connect ${what} is 400 naming the setting, on create and replace`, async (t) => {
      const res = await post(group({ slug: 'limits', connect }));
      t.equal(res.statusCode, 400);
      t.match(res.json(), { error: 'Bad Request', message });
      const put = await admin({ method: 'PUT', url: '/admin/dial-groups/sales', payload: { name: 'Sales', strategy: 'sequential', members: [], connect } });
      t.equal(put.statusCode, 400);
      t.match(put.json().message, message);
    });
  }
  t.test('no group was written by a rejected request', async (t) => {
    t.equal(await db.prisma.dialGroup.count({ where: { slug: 'limits' } }), 0);
    t.equal((await admin({ method: 'GET', url: '/admin/dial-groups/sales' })).json().strategy, 'round_robin', 'sales unchanged');
  });

  t.test('outgoingPhoneNumber is a valid number kept in E.164: +91 with the trunk 0 is stored without it, an impossible one is 400', async (t) => {
    // The ExoPhone 080 4711 5777 with +91 put before its national form: Exotel takes only E.164.
    const res = await post(group({ slug: 'exophone', connect: { outgoingPhoneNumber: '+9108047115777' } }));
    t.equal(res.statusCode, 201, res.body);
    t.equal(res.json().connect.outgoingPhoneNumber, '+918047115777');
    const patched = await admin({ method: 'PATCH', url: '/admin/dial-groups/exophone', payload: { connect: { outgoingPhoneNumber: '+91 080 4711 5778' } } });
    t.equal(patched.statusCode, 400, 'spaces are still no E.164');
    const plus0 = await admin({ method: 'PATCH', url: '/admin/dial-groups/exophone', payload: { connect: { outgoingPhoneNumber: '+9108047115778' } } });
    t.equal(plus0.statusCode, 200, plus0.body);
    t.equal(plus0.json().connect.outgoingPhoneNumber, '+918047115778');
    // E.164 in shape, but no number: a digit missing, or none at all.
    for (const number of ['+91804711577', '+910000000']) {
      for (const [method, url, slug] of [
        ['POST', '/admin/dial-groups', 'exophone-bad'],
        ['PATCH', '/admin/dial-groups/exophone', undefined],
      ] as const) {
        const bad = await admin({
          method,
          url,
          payload: slug ? group({ slug, connect: { outgoingPhoneNumber: number } }) : { connect: { outgoingPhoneNumber: number } },
        });
        t.equal(bad.statusCode, 400, `${method} ${number}`);
        t.match(bad.json().message, `body/connect/outgoingPhoneNumber: '${number}' is not a valid phone number`, `${method} ${number}`);
      }
    }
    t.equal((await admin({ method: 'GET', url: '/admin/dial-groups/exophone' })).json().connect.outgoingPhoneNumber, '+918047115778');
    await db.prisma.dialGroup.deleteMany({ where: { slug: { in: ['exophone', 'exophone-bad'] } } }); // the tests below list every group
  });

  t.test('an invalid member number is 400 naming body/members/<i>/number', async (t) => {
    const res = await post(group({ slug: 'bad', members: [{ number: '09812345678' }, { number: '12' }] }));
    t.equal(res.statusCode, 400);
    t.match(res.json().message, /^body\/members\/1\/number: '12' is not a valid phone number/);
  });

  t.test('a member number with an extension is 400 naming it (the bare number would ring the switchboard)', async (t) => {
    for (const number of ['09812345678 ext 12', '09812345678 x12', '+919812345678;ext=12']) {
      const res = await post(group({ slug: 'ext', members: [{ number: '09812345679' }, { number }] }));
      t.equal(res.statusCode, 400, number);
      t.match(res.json().message, `body/members/1/number: '${number}' has an extension (12); Exotel dials whole phone numbers, not extensions`);
    }
    t.equal(await db.prisma.dialGroup.count({ where: { slug: 'ext' } }), 0);
  });

  t.test('the same number twice in one group, in any form, is 400 naming the later index', async (t) => {
    const res = await post(group({ slug: 'dup', members: [{ number: '+919812345678' }, { number: '09800000001' }, { number: '919812345678' }] }));
    t.equal(res.statusCode, 400);
    t.match(res.json().message, /^body\/members\/2\/number: \+919812345678 is already member 0/);
  });

  t.test('an unknown strategy is 400 naming body/strategy', async (t) => {
    const res = await post(group({ slug: 'bad', strategy: 'roundrobin' }));
    t.equal(res.statusCode, 400);
    t.match(res.json().message, /^body\/strategy: /);
  });

  t.test('sticky lookbackDays 0 is 400 naming body/sticky/lookbackDays', async (t) => {
    const res = await post(group({ slug: 'bad', sticky: { enabled: true, lookbackDays: 0 } }));
    t.equal(res.statusCode, 400);
    t.match(res.json().message, /^body\/sticky\/lookbackDays: /);
  });

  t.test('a member shift naming a missing schedule is 422 naming it; an existing one is kept', async (t) => {
    const res = await post(
      group({
        slug: 'shifts',
        members: [
          { number: '09800000001', schedule: 'day' },
          { number: '09800000002', schedule: 'weekend' },
        ],
      }),
    );
    t.equal(res.statusCode, 422);
    t.match(res.json(), { error: 'Unprocessable Entity', message: /body\/members\/1\/schedule: schedule 'weekend' does not exist/ });
    t.notMatch(res.json().message, /'day'/, 'the existing schedule is not named');
    const ok = await post(
      group({
        slug: 'shifts',
        members: [
          { number: '09800000001', schedule: 'day' },
          { number: '09800000002', schedule: 'night' },
        ],
      }),
    );
    t.equal(ok.statusCode, 201);
    t.same(
      ok.json().members.map((m: { schedule: string }) => m.schedule),
      ['day', 'night'],
    );
  });

  t.test('a second group with the same slug is 409 and leaves the first unchanged', async (t) => {
    const res = await post(group({ name: 'Again' }));
    t.equal(res.statusCode, 409);
    t.match(res.json(), { error: 'Conflict', message: /slug/ });
    t.equal((await admin({ method: 'GET', url: '/admin/dial-groups/sales' })).json().name, 'Sales');
  });

  t.test('get answers one group; list answers all by slug; unknown slug 404, malformed slug 400', async (t) => {
    const one = await admin({ method: 'GET', url: '/admin/dial-groups/sales' });
    t.equal(one.statusCode, 200);
    t.match(one.json(), { slug: 'sales', members: [{ number: '+919812345679' }, {}, {}] });
    const all = await admin({ method: 'GET', url: '/admin/dial-groups' });
    t.equal(all.statusCode, 200);
    t.same(
      all.json().map((g: { slug: string }) => g.slug),
      ['full', 'partial', 'plain', 'sales', 'shifts', 'text'],
    );
    const missing = await admin({ method: 'GET', url: '/admin/dial-groups/nope' });
    t.equal(missing.statusCode, 404);
    t.match(missing.json().message, "dial-group 'nope' does not exist");
    t.equal((await admin({ method: 'GET', url: '/admin/dial-groups/Not_A_Slug' })).statusCode, 400);
  });

  t.test('PATCH member active false then true, the number given in national form; answers the whole group', async (t) => {
    const off = await admin({ method: 'PATCH', url: '/admin/dial-groups/sales/members/09812345678', payload: { active: false } });
    t.equal(off.statusCode, 200);
    t.match(off.json(), { slug: 'sales', members: [{ number: '+919812345679', active: true }, { active: false }, { number: '+919812345678', active: false }] });
    const row = await db.prisma.dialGroupMember.findFirstOrThrow({ where: { number: '+919812345678', group: { slug: 'sales' } } });
    t.equal(row.active, false, 'stored');
    const on = await admin({ method: 'PATCH', url: `/admin/dial-groups/sales/members/${encodeURIComponent('+919812345678')}`, payload: { active: true } });
    t.equal(on.statusCode, 200);
    t.match(on.json().members[2], { number: '+919812345678', name: 'Asha', priority: 2, active: true });
  });

  t.test('PATCH member changes only the fields given; a shift must exist (422), null clears it', async (t) => {
    const res = await admin({ method: 'PATCH', url: '/admin/dial-groups/sales/members/919812345679', payload: { priority: 5, schedule: 'day' } });
    t.equal(res.statusCode, 200);
    t.match(res.json().members[2], { number: '+919812345679', name: 'Ravi', priority: 5, weight: 3, active: true, schedule: 'day' });
    const missing = await admin({ method: 'PATCH', url: '/admin/dial-groups/sales/members/919812345679', payload: { schedule: 'weekend' } });
    t.equal(missing.statusCode, 422);
    t.match(missing.json().message, "schedule 'weekend' does not exist");
    const cleared = await admin({ method: 'PATCH', url: '/admin/dial-groups/sales/members/919812345679', payload: { schedule: null, priority: 1 } });
    t.match(cleared.json().members[0], { number: '+919812345679', schedule: null });
  });

  t.test('PATCH member: unknown member 404, unknown group 404, invalid number 400 naming params/number, empty or unknown field 400', async (t) => {
    const notMember = await admin({ method: 'PATCH', url: '/admin/dial-groups/sales/members/09800000009', payload: { active: false } });
    t.equal(notMember.statusCode, 404);
    t.match(notMember.json().message, "member of dial-group sales '+919800000009' does not exist");
    t.equal((await admin({ method: 'PATCH', url: '/admin/dial-groups/nope/members/09812345678', payload: { active: false } })).statusCode, 404);
    const bad = await admin({ method: 'PATCH', url: '/admin/dial-groups/sales/members/12', payload: { active: false } });
    t.equal(bad.statusCode, 400);
    t.match(bad.json().message, /^params\/number: /);
    t.equal((await admin({ method: 'PATCH', url: '/admin/dial-groups/sales/members/09812345678', payload: {} })).statusCode, 400, 'empty body');
    const unknown = await admin({ method: 'PATCH', url: '/admin/dial-groups/sales/members/09812345678', payload: { number: '09800000001' } });
    t.equal(unknown.statusCode, 400);
    t.match(unknown.json().message, 'body/number: unknown field');
  });

  t.test('PATCH group changes only the fields given; members and connect, when given, are replaced whole', async (t) => {
    const before = (await admin({ method: 'GET', url: '/admin/dial-groups/sales' })).json();
    const renamed = await admin({ method: 'PATCH', url: '/admin/dial-groups/sales', payload: { name: 'Sales team' } });
    t.equal(renamed.statusCode, 200);
    t.match(renamed.json(), { name: 'Sales team', strategy: 'round_robin', sticky: { enabled: true, lookbackDays: 30 } });
    t.strictSame(renamed.json().members, before.members, 'members untouched');
    const connect = await admin({ method: 'PATCH', url: '/admin/dial-groups/sales', payload: { connect: { record: true, recordingChannels: 'dual' } } });
    t.strictSame(connect.json().connect, { ...EXOTEL_DEFAULTS, record: true, recordingChannels: 'dual' });
    t.equal(connect.json().members.length, 3, 'members untouched');
    const members = await admin({
      method: 'PATCH',
      url: '/admin/dial-groups/sales',
      payload: { members: [{ number: '09812345678', name: 'Asha' }], sticky: null },
    });
    t.equal(members.statusCode, 200);
    t.strictSame(members.json().members, [{ number: '+919812345678', name: 'Asha', priority: 0, weight: 1, active: true, schedule: null }]);
    t.equal(members.json().sticky, null);
    t.match(members.json().connect, { record: true, recordingChannels: 'dual' }, 'connect untouched');
    t.equal(await db.prisma.dialGroupMember.count({ where: { group: { slug: 'sales' } } }), 1, 'old member rows removed');
    const missing = await admin({ method: 'PATCH', url: '/admin/dial-groups/nope', payload: { name: 'x' } });
    t.equal(missing.statusCode, 404);
    const shift = await admin({ method: 'PATCH', url: '/admin/dial-groups/sales', payload: { members: [{ number: '09812345678', schedule: 'weekend' }] } });
    t.equal(shift.statusCode, 422);
    t.match(shift.json().message, "body/members/0/schedule: schedule 'weekend' does not exist");
    const dup = await admin({
      method: 'PATCH',
      url: '/admin/dial-groups/sales',
      payload: { members: [{ number: '09812345678' }, { number: '+919812345678' }] },
    });
    t.equal(dup.statusCode, 400);
    t.match(dup.json().message, /^body\/members\/1\/number: /);
    t.equal(await db.prisma.dialGroupMember.count({ where: { group: { slug: 'sales' } } }), 1, 'a rejected change leaves the members as they were');
  });

  t.test('PUT replaces every field: absent sticky becomes null, absent connect resets to the defaults; 404 for an unknown slug', async (t) => {
    const res = await admin({
      method: 'PUT',
      url: '/admin/dial-groups/sales',
      payload: {
        name: 'Sales',
        strategy: 'weighted',
        members: [
          { number: '09812345670', weight: 5, schedule: 'day' },
          { number: '09812345671', weight: 1 },
        ],
      },
    });
    t.equal(res.statusCode, 200);
    t.match(res.json(), { name: 'Sales', strategy: 'weighted', sticky: null });
    t.strictSame(res.json().connect, EXOTEL_DEFAULTS);
    t.same(
      res.json().members.map((m: { number: string; weight: number; schedule: string | null }) => [m.number, m.weight, m.schedule]),
      [
        ['+919812345670', 5, 'day'],
        ['+919812345671', 1, null],
      ],
    );
    const missing = await admin({ method: 'PUT', url: '/admin/dial-groups/nope', payload: { name: 'x', strategy: 'random', members: [] } });
    t.equal(missing.statusCode, 404);
    const noMembers = await admin({ method: 'PUT', url: '/admin/dial-groups/sales', payload: { name: 'x', strategy: 'random' } });
    t.equal(noMembers.statusCode, 400);
    t.match(noMembers.json().message, 'body/members: is required');
    const shift = await admin({
      method: 'PUT',
      url: '/admin/dial-groups/sales',
      payload: { name: 'x', strategy: 'random', members: [{ number: '09812345670', schedule: 'weekend' }] },
    });
    t.equal(shift.statusCode, 422);
  });

  t.test('deleting a schedule a member uses as its shift is 409 naming the dial group', async (t) => {
    const res = await admin({ method: 'DELETE', url: '/admin/schedules/day' });
    t.equal(res.statusCode, 409);
    t.match(res.json(), { error: 'Conflict', message: "schedule 'day' is used by dial groups 'sales', 'shifts'" });
    t.equal((await admin({ method: 'GET', url: '/admin/schedules/day' })).statusCode, 200, 'still there');
  });

  t.test('deleting a group a flow uses (rule then, otherwise or onError) is 409 naming the flows', async (t) => {
    const flow = (slug: string, over: object) =>
      admin({
        method: 'POST',
        url: '/admin/flows',
        payload: {
          slug,
          name: slug,
          type: 'dial',
          rules: [],
          otherwise: { numbers: ['09800000001'] },
          onError: { numbers: ['09800000001'] },
          ...over,
        },
      });
    t.equal((await flow('inbound', { otherwise: { dialGroup: 'sales' } })).statusCode, 201);
    t.equal((await flow('backup', { onError: { dialGroup: 'sales' } })).statusCode, 201);
    t.equal((await flow('vip', { rules: [{ name: 'gold', when: { callerPrefix: ['+9198'] }, then: { dialGroup: 'full' } }] })).statusCode, 201);
    const sales = await admin({ method: 'DELETE', url: '/admin/dial-groups/sales' });
    t.equal(sales.statusCode, 409);
    t.match(sales.json(), { error: 'Conflict', message: "dial-group 'sales' is used by flows 'backup', 'inbound'" });
    const full = await admin({ method: 'DELETE', url: '/admin/dial-groups/full' });
    t.equal(full.statusCode, 409);
    t.match(full.json().message, "dial-group 'full' is used by flow 'vip'");
    t.equal((await admin({ method: 'GET', url: '/admin/dial-groups/sales' })).statusCode, 200, 'still there');
    const schedule = await admin({ method: 'DELETE', url: '/admin/schedules/night' });
    t.equal(schedule.statusCode, 409, "a shift's schedule is still refused with flows around");
    t.match(schedule.json().message, "schedule 'night' is used by dial group 'shifts'");
  });

  t.test('delete of an unused group answers 204 and removes its members; then 404', async (t) => {
    await admin({ method: 'DELETE', url: '/admin/flows/backup' });
    await admin({ method: 'DELETE', url: '/admin/flows/inbound' });
    const { id } = await db.prisma.dialGroup.findUniqueOrThrow({ where: { slug: 'sales' } });
    t.equal(await db.prisma.dialGroupMember.count({ where: { groupId: id } }), 2);
    const res = await admin({ method: 'DELETE', url: '/admin/dial-groups/sales' });
    t.equal(res.statusCode, 204);
    t.equal(res.body, '');
    t.equal(await db.prisma.dialGroupMember.count({ where: { groupId: id } }), 0, 'members gone with it');
    t.equal((await admin({ method: 'GET', url: '/admin/dial-groups/sales' })).statusCode, 404);
    t.equal((await admin({ method: 'DELETE', url: '/admin/dial-groups/sales' })).statusCode, 404);
    t.equal((await admin({ method: 'DELETE', url: '/admin/schedules/day' })).statusCode, 409, "'shifts' still uses day");
    await admin({ method: 'DELETE', url: '/admin/dial-groups/shifts' });
    t.equal((await admin({ method: 'DELETE', url: '/admin/schedules/day' })).statusCode, 204, 'no longer used by any group');
  });

  t.test('every write is audited with the key, before and after', async (t) => {
    const audit = (await admin({ method: 'GET', url: '/admin/audit?entity=dial-group&entityId=sales' })).json();
    t.same(
      audit.items.map((a: { action: string }) => a.action),
      ['delete', 'replace', 'update', 'update', 'update', 'update-member', 'update-member', 'update-member', 'update-member', 'create'],
    );
    t.match(audit.items[0], {
      apiKeyId: BOOTSTRAP_KEY_ID,
      entity: 'dial-group',
      entityId: 'sales',
      before: { slug: 'sales', strategy: 'weighted' },
      after: null,
    });
    const off = audit.items[audit.items.length - 2];
    t.match(off, { action: 'update-member', before: { number: '+919812345678', active: true }, after: { number: '+919812345678', active: false } });
    t.match(audit.items[audit.items.length - 1], { action: 'create', before: null, after: { slug: 'sales', connect: EXOTEL_DEFAULTS } });
  });
});

t.test('wrap-up and missed-offer settings: defaults, given values, PATCH one, PUT resets, limits named', async (t) => {
  const { admin } = await buildTestApp(t);
  const created = await admin({ method: 'POST', url: '/admin/dial-groups', payload: group({ members: [] }) });
  t.equal(created.statusCode, 201);
  t.match(created.json(), { wrapUpSeconds: 0, maxMissedOffers: 0, missedPauseSeconds: 300 }, 'no wrap-up, never paused by default');
  const given = await admin({
    method: 'POST',
    url: '/admin/dial-groups',
    payload: group({ slug: 'support', members: [], wrapUpSeconds: 30, maxMissedOffers: 2, missedPauseSeconds: 600 }),
  });
  t.match(given.json(), { wrapUpSeconds: 30, maxMissedOffers: 2, missedPauseSeconds: 600 });
  const patched = await admin({ method: 'PATCH', url: '/admin/dial-groups/support', payload: { wrapUpSeconds: 45 } });
  t.match(patched.json(), { wrapUpSeconds: 45, maxMissedOffers: 2, missedPauseSeconds: 600 }, 'PATCH changes only the field given');
  const replaced = await admin({ method: 'PUT', url: '/admin/dial-groups/support', payload: { name: 'Support', strategy: 'sequential', members: [] } });
  t.match(replaced.json(), { wrapUpSeconds: 0, maxMissedOffers: 0, missedPauseSeconds: 300 }, 'PUT resets absent ones to their defaults');
  for (const [field, value] of [
    ['wrapUpSeconds', -1],
    ['wrapUpSeconds', 3601],
    ['maxMissedOffers', 101],
    ['missedPauseSeconds', 0],
  ] as const) {
    const res = await admin({ method: 'PATCH', url: '/admin/dial-groups/support', payload: { [field]: value } });
    t.equal(res.statusCode, 400, `${field} ${value}`);
    t.match(res.json().message, new RegExp(`^body/${field}: must be`));
  }
  const audit = await admin({ method: 'GET', url: '/admin/audit?entity=dial-group&entityId=support' });
  t.match(audit.json().items[1], { action: 'update', before: { wrapUpSeconds: 30 }, after: { wrapUpSeconds: 45 } }, 'audited like every group change');
});

t.test('a PUT or PATCH of the group as GET shows it changes nothing: same updatedAt, no audit entry; a real change still does', async (t) => {
  const { admin } = await buildTestApp(t);
  await admin({ method: 'POST', url: '/admin/schedules', payload: { slug: 'day', name: 'Day shift' } });
  const created = await admin({
    method: 'POST',
    url: '/admin/dial-groups',
    payload: group({
      sticky: { enabled: true },
      wrapUpSeconds: 30,
      members: [...group().members, { number: '09812345671', schedule: 'day' }],
      connect: {
        record: true,
        musicOnHold: { type: 'custom_tone', value: 'https://example.com/hold.mp3' },
        startCallPlayback: { playbackTo: 'both', type: 'text', value: 'Hello' },
      },
    }),
  });
  t.equal(created.statusCode, 201, created.body);
  const trail = async () => (await admin({ method: 'GET', url: '/admin/audit?entity=dial-group&entityId=sales' })).json().items.length;
  const stored = (await admin({ method: 'GET', url: '/admin/dial-groups/sales' })).json();
  const { slug: _slug, createdAt: _c, updatedAt: _u, ...body } = stored;
  const entries = await trail();
  for (const [method, payload] of [
    ['PUT', body],
    ['PUT', body],
    ['PATCH', { strategy: stored.strategy, members: stored.members }],
  ] as const) {
    const res = await admin({ method, url: '/admin/dial-groups/sales', payload });
    t.equal(res.statusCode, 200, res.body);
    t.same(res.json(), stored, `${method}: answered the group as it is, updatedAt included`);
  }
  t.equal(await trail(), entries, 'no audit entry for a write that changed nothing');
  const changed = await admin({ method: 'PATCH', url: '/admin/dial-groups/sales', payload: { wrapUpSeconds: 31 } });
  t.equal(changed.json().wrapUpSeconds, 31);
  t.not(changed.json().updatedAt, stored.updatedAt);
  t.equal(await trail(), entries + 1, 'a real change is audited');
});
