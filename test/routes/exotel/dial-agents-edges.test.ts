/**
 * An agent's state at the edges, through the real app on a real Postgres: two wrap-ups of one
 * agent; a flow that lists numbers: its ringing time, and how a re-fetch paces its agents; and a
 * second Connect applet of the call.
 */
import t from 'tap';
import type { Test } from 'tap';
import { buildTestApp, type TestApp, zoneAtNoon } from '../../helper.js';

const A = '+919811100001';
const B = '+919811100002';
const C = '+919811100003';
const D = '+919811100004';
const enc = encodeURIComponent;

async function until(ok: () => boolean) {
  for (let i = 0; i < 300 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!ok()) throw new Error('snapshot did not catch up');
}

/**
 * Group `sales` (A, B, C by priority) dialed by flow `agents`, group `support` (C, D) dialed by flow
 * `agents2`, and flow `nums`, which lists A and D.
 */
async function setup(t: Test, opts: { sales?: Record<string, unknown>; support?: Record<string, unknown> } = {}) {
  const ctx = await buildTestApp(t, { PUBLIC_URL: 'https://exo.example.com' });
  const group = (slug: string, numbers: string[], more: Record<string, unknown> = {}) => ({
    slug,
    name: slug,
    strategy: 'sequential',
    members: numbers.map((number, i) => ({ number, priority: i + 1 })),
    ...more,
  });
  const flow = (slug: string, otherwise: Record<string, unknown>) => ({
    slug,
    name: slug,
    type: 'dial',
    rules: [],
    otherwise,
    onError: { numbers: ['+919800000099'] },
  });
  t.equal((await ctx.admin({ method: 'POST', url: '/admin/dial-groups', payload: group('sales', [A, B, C], opts.sales) })).statusCode, 201);
  t.equal((await ctx.admin({ method: 'POST', url: '/admin/dial-groups', payload: group('support', [C, D], opts.support) })).statusCode, 201);
  for (const [slug, otherwise] of [
    ['agents', { dialGroup: 'sales' }],
    ['agents2', { dialGroup: 'support' }],
    ['nums', { numbers: [A, D] }],
  ] as const) {
    t.equal((await ctx.admin({ method: 'POST', url: '/admin/flows', payload: flow(slug, otherwise) })).statusCode, 201);
  }
  await until(() => ctx.app.rules.current?.flows.size === 3 && ctx.app.rules.current.dialGroups.size === 2);
  return ctx;
}

/** A Dial Whom request to a flow: the numbers answered. */
const dialWhom = async (ctx: TestApp, flow: string, query: string) =>
  (await ctx.app.inject({ method: 'GET', url: `/exotel/dial-whom/${flow}?CallFrom=09800000001&${query}` })).body;
/** A Connect request to a flow: its answer. */
const connect = async (ctx: TestApp, flow: string, query: string) =>
  (await ctx.app.inject({ method: 'GET', url: `/exotel/connect/${flow}?CallFrom=09800000001&${query}` })).json();
/** The query string of the events URL a Connect answer names (its group and flow). */
const eventsQuery = (answer: { dial_passthru_event_url: string }) => new URL(answer.dial_passthru_event_url).search.slice(1);
const event = (ctx: TestApp, query: string) => ctx.app.inject({ method: 'GET', url: `/exotel/dial-events?CallFrom=09800000001&${query}` });
/** The agent as GET /admin/agents/:number shows it, "today" counted where it is noon. */
const agent = async (ctx: TestApp, number: string) =>
  (await ctx.admin({ method: 'GET', url: `/admin/agents/${enc(number)}?timezone=${enc(zoneAtNoon())}` })).json();

t.test("an agent's wrap-up ends at the later of two: a second answered call of a group with a shorter wrap-up does not cut the first's short", async (t) => {
  const ctx = await setup(t, { sales: { wrapUpSeconds: 300 }, support: { wrapUpSeconds: 10 } });
  // Two callers at once: support's Connect offers C (call w2), and so does sales' (call w1), before either Dial event came.
  const w2 = await connect(ctx, 'agents2', 'CallSid=w2');
  t.same(w2.destination.numbers, [C, D]);
  const w1 = await connect(ctx, 'agents', 'CallSid=w1');
  t.same(w1.destination.numbers, [A, B, C]);
  const w1Events = eventsQuery(w1);
  t.equal(w1Events, 'group=sales&flow=agents');
  // C takes sales' call w1, and it ends: sales' wrap-up, 300 s
  for (const ev of ['Status=busy&EventType=Dial', 'Status=busy&EventType=Answered', 'Status=free&EventType=Terminal']) {
    t.equal((await event(ctx, `CallSid=w1&DialWhomNumber=09811100003&${ev}&${w1Events}`)).statusCode, 200);
  }
  const first = Date.parse((await agent(ctx, C)).wrapUpUntil);
  t.ok(first - Date.now() > 250_000, "sales' wrap-up");
  // C had also taken support's call w2 (call waiting); it ends now: support's wrap-up is 10 s, which ends before sales'
  for (const ev of ['Status=busy&EventType=Dial', 'Status=busy&EventType=Answered', 'Status=free&EventType=Terminal']) {
    t.equal((await event(ctx, `CallSid=w2&DialWhomNumber=09811100003&${ev}&${eventsQuery(w2)}`)).statusCode, 200);
  }
  const after = await agent(ctx, C);
  t.match(after, { state: 'wrapping_up', today: { offers: 2, answers: 2 } });
  t.equal(Date.parse(after.wrapUpUntil), first, "a dial event's end: the wrap-up still ends at sales' end");
  // the same with the end learned from a re-fetch (Dial Whom, no events): call w3, offered C before w4's end
  await ctx.db.pool.query('UPDATE agent_states SET wrap_up_until = NULL WHERE number = $1', [C]);
  t.equal(await dialWhom(ctx, 'agents2', 'CallSid=w3'), `${C},${D}`);
  t.equal(await dialWhom(ctx, 'agents', 'CallSid=w4'), `${A},${B},${C}`);
  t.equal(await dialWhom(ctx, 'agents', 'CallSid=w4&DialCallStatus=completed&DialWhomNumber=09811100003'), `${A},${B}`);
  const w4 = Date.parse((await agent(ctx, C)).wrapUpUntil);
  t.ok(w4 - Date.now() > 250_000, "sales' wrap-up");
  t.equal(await dialWhom(ctx, 'agents2', 'CallSid=w3&DialCallStatus=completed&DialWhomNumber=09811100003'), D);
  t.equal(Date.parse((await agent(ctx, C)).wrapUpUntil), w4, "a re-fetch's completed: the wrap-up still ends at sales' end");
  t.equal(await dialWhom(ctx, 'agents', 'CallSid=w5'), `${A},${B}`, 'C is not offered while wrapping up');
});

t.test("a flow that lists numbers rings for the Connect answer's 30 s, not the agent's group's ringing time: a longer leg was answered", async (t) => {
  // sales rings for 60 s, so its agents' legs are answered only past 65 s; a list rings 30 s (no group's settings)
  // (support rings for 15 s: its agents' legs longer than 20 s are taken for answered)
  const ctx = await setup(t, {
    sales: { wrapUpSeconds: 60, maxMissedOffers: 1, connect: { maxRingingDuration: 60 } },
    support: { connect: { maxRingingDuration: 15 } },
  });
  const answer = await connect(ctx, 'nums', 'CallSid=n1');
  t.same(answer.destination.numbers, [A, D]);
  t.equal(answer.max_ringing_duration, 30, 'the list rings 30 s');
  const query = eventsQuery(answer);
  t.equal(query, 'flow=nums');
  await event(ctx, `CallSid=n1&DialWhomNumber=09811100001&Status=busy&EventType=Dial&${query}`);
  // the leg lasted 45 s (no Answered events on this account): longer than Exotel rings, so A picked up
  await ctx.db.pool.query(`UPDATE agent_offers SET offered_at = now() - interval '45 seconds' WHERE call_sid = 'n1'`);
  await event(ctx, `CallSid=n1&DialWhomNumber=09811100001&Status=free&EventType=Terminal&${query}`);
  t.match(await agent(ctx, A), { state: 'wrapping_up', paused: null, missedOffers: 0, today: { offers: 1, answers: 1, misses: 0 } });
  // and a leg that ends within the 30 s was not picked up: a miss
  await event(ctx, `CallSid=n2&DialWhomNumber=09811100004&Status=busy&EventType=Dial&${query}`);
  await ctx.db.pool.query(`UPDATE agent_offers SET offered_at = now() - interval '25 seconds' WHERE call_sid = 'n2'`);
  await event(ctx, `CallSid=n2&DialWhomNumber=09811100004&Status=free&EventType=Terminal&${query}`);
  t.match(await agent(ctx, D), { state: 'available', wrapUpUntil: null, today: { offers: 1, answers: 0, misses: 1 } });
});

t.test("a flow that lists numbers: a re-fetch's report paces the agent as the dial events do, by the strictest of the agent's groups", async (t) => {
  const ctx = await setup(t, { sales: { maxMissedOffers: 1, missedPauseSeconds: 600 }, support: { wrapUpSeconds: 60 } });
  // Dial Whom (no events): A does not answer, then D answers
  t.equal(await dialWhom(ctx, 'nums', 'CallSid=p1'), `${A},${D}`);
  t.equal(await dialWhom(ctx, 'nums', 'CallSid=p1&DialCallStatus=no-answer&DialWhomNumber=09811100001'), D);
  t.match(await agent(ctx, A), { state: 'paused', paused: { reason: '1 offer not answered (no-answer, call p1)' }, today: { offers: 1, misses: 1 } });
  t.equal(await dialWhom(ctx, 'nums', 'CallSid=p1&DialCallStatus=completed&DialWhomNumber=09811100004'), '');
  const d = await agent(ctx, D);
  t.match(d, { state: 'wrapping_up', today: { offers: 1, answers: 1 } });
  t.ok(Date.parse(d.wrapUpUntil) - Date.now() > 50_000, "support's wrap-up");
  // the same miss learned from the dial events (Connect) pauses A too
  await ctx.admin({ method: 'PUT', url: `/admin/agents/${enc(A)}/availability`, payload: { status: 'available' } });
  const query = eventsQuery(await connect(ctx, 'nums', 'CallSid=p2'));
  await event(ctx, `CallSid=p2&DialWhomNumber=09811100001&Status=busy&EventType=Dial&${query}`);
  await event(ctx, `CallSid=p2&DialWhomNumber=09811100001&Status=free&EventType=Terminal&${query}`);
  t.match(await agent(ctx, A), { state: 'paused', today: { offers: 2, misses: 2 } });
});

t.test("a flow that lists numbers: a re-fetch's offer is stored under the group the metrics count it under, as the dial events' is", async (t) => {
  // A is in sales only, C in sales and support: the metrics count A's offers under sales, C's under group="".
  // Reported by a re-fetch, A's offer was stored with no group, while the same offer learned from the
  // dial events was stored under sales: recentOffers and the metrics disagreed on whose offer it was.
  const ctx = await setup(t);
  const listing = await ctx.admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { slug: 'nums2', name: 'nums2', type: 'dial', rules: [], otherwise: { numbers: [A, C] }, onError: { numbers: ['+919800000099'] } },
  });
  t.equal(listing.statusCode, 201);
  await until(() => ctx.app.rules.current?.flows.has('nums2') === true);
  t.equal(await dialWhom(ctx, 'nums2', 'CallSid=g1'), `${A},${C}`);
  t.equal(await dialWhom(ctx, 'nums2', 'CallSid=g1&DialCallStatus=no-answer&DialWhomNumber=09811100001'), C);
  t.equal(await dialWhom(ctx, 'nums2', 'CallSid=g1&DialCallStatus=no-answer&DialWhomNumber=09811100003'), '');
  const query = eventsQuery(await connect(ctx, 'nums2', 'CallSid=g2'));
  await event(ctx, `CallSid=g2&DialWhomNumber=09811100001&Status=busy&EventType=Dial&${query}`);
  await event(ctx, `CallSid=g2&DialWhomNumber=09811100001&Status=free&EventType=Terminal&${query}`);
  const { rows } = await ctx.db.pool.query('SELECT call_sid, number, group_slug FROM agent_offers ORDER BY call_sid, number');
  t.same(
    rows,
    [
      { call_sid: 'g1', number: A, group_slug: 'sales' },
      { call_sid: 'g1', number: C, group_slug: null },
      { call_sid: 'g2', number: A, group_slug: 'sales' },
    ],
    "A's offers under sales, learned from a re-fetch or from the events; C's (two groups) under none",
  );
  t.match((await agent(ctx, A)).recentOffers, [
    { callSid: 'g2', group: 'sales' },
    { callSid: 'g1', group: 'sales' },
  ]);
  const text = (await ctx.app.inject({ method: 'GET', url: '/metrics' })).body;
  t.match(text, /exoroute_agent_offers_total\{group="sales"\} 2\n/, 'the metrics count the same two under sales');
  t.match(text, /exoroute_agent_offers_total\{group=""\} 1\n/, "and C's under no group");
});

t.test(
  "GET /admin/agents counts today's offers per group too, as /metrics does: summed over a group's members, they agree for an agent in two groups",
  async (t) => {
    // C is in sales and support. Summed over each group's members, the agents' `today` counted C's
    // offers in both groups, while exoroute_agent_offers_total{group} counts each under the group
    // that made it: a supervisor could not reconcile support's figures with the agents'.
    const ctx = await setup(t);
    const ring = async (flow: string, sid: string, who: string, answered: boolean) => {
      const query = eventsQuery(await connect(ctx, flow, `CallSid=${sid}`));
      await event(ctx, `CallSid=${sid}&DialWhomNumber=${enc(who)}&Status=busy&EventType=Dial&${query}`);
      if (answered) await event(ctx, `CallSid=${sid}&DialWhomNumber=${enc(who)}&Status=busy&EventType=Answered&${query}`);
      await event(ctx, `CallSid=${sid}&DialWhomNumber=${enc(who)}&Status=free&EventType=Terminal&${query}`);
    };
    await ring('agents2', 's1', C, false); // support offers C first: a miss
    await ring('agents2', 's2', D, true);
    await ring('agents', 'a1', C, true); // sales offers C: answered
    await ring('agents', 'a2', A, false);
    const list = (await ctx.admin({ method: 'GET', url: `/admin/agents?timezone=${enc(zoneAtNoon())}` })).json() as Array<{
      number: string;
      today: { offers: number; answers: number; misses: number };
      groups: Array<{ slug: string; today: { offers: number; answers: number; misses: number } }>;
    }>;
    const c = list.find((x) => x.number === C)!;
    t.match(c.today, { offers: 2, answers: 1, misses: 1 });
    t.match(c.groups, [
      { slug: 'sales', today: { offers: 1, answers: 1, misses: 0 } },
      { slug: 'support', today: { offers: 1, answers: 0, misses: 1 } },
    ]);
    const text = (await ctx.app.inject({ method: 'GET', url: '/metrics' })).body;
    for (const group of ['sales', 'support']) {
      const members = list.flatMap((x) => x.groups.filter((g) => g.slug === group).map((g) => g.today));
      const summed = (k: 'offers' | 'answers' | 'misses') => members.reduce((n, x) => n + x[k], 0);
      for (const k of ['offers', 'answers', 'misses'] as const) {
        const counted = Number(new RegExp(`^exoroute_agent_${k}_total\\{group="${group}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
        t.equal(summed(k), counted, `${group}: ${k} of its members today (${summed(k)}) as exoroute_agent_${k}_total counts them`);
      }
    }
  },
);

t.test('a second Connect applet of the call (another flow): the agent the first applet dialed last counts as tried there, as the README says', async (t) => {
  const ctx = await setup(t);
  // the sales applet: nobody answers, C last
  t.equal(await dialWhom(ctx, 'agents', 'CallSid=s1'), `${A},${B},${C}`);
  t.equal(await dialWhom(ctx, 'agents', 'CallSid=s1&DialCallStatus=no-answer&DialWhomNumber=09811100001'), `${B},${C}`);
  t.equal(await dialWhom(ctx, 'agents', 'CallSid=s1&DialCallStatus=no-answer&DialWhomNumber=09811100002'), C);
  t.equal(await dialWhom(ctx, 'agents', 'CallSid=s1&DialCallStatus=no-answer&DialWhomNumber=09811100003'), '');
  // the call moves on to the support applet, whose first request carries the previous applet's last attempt
  t.equal(await dialWhom(ctx, 'agents2', 'CallSid=s1&DialCallStatus=no-answer&DialWhomNumber=09811100003'), D, 'C: tried');
  // support's re-fetch after D is told apart from its first request, and nobody is left
  t.equal(await dialWhom(ctx, 'agents2', 'CallSid=s1&DialCallStatus=no-answer&DialWhomNumber=09811100004'), '');
  // a sales agent the sales applet did not dial last is offered by support: a second offer of its own
  t.equal(await dialWhom(ctx, 'agents', 'CallSid=s2'), `${A},${B},${C}`);
  t.equal(await dialWhom(ctx, 'agents', 'CallSid=s2&DialCallStatus=no-answer&DialWhomNumber=09811100003'), `${A},${B}`);
  t.equal(await dialWhom(ctx, 'agents', 'CallSid=s2&DialCallStatus=no-answer&DialWhomNumber=09811100002'), A);
  t.equal(await dialWhom(ctx, 'agents', 'CallSid=s2&DialCallStatus=no-answer&DialWhomNumber=09811100001'), '');
  t.equal(await dialWhom(ctx, 'agents2', 'CallSid=s2&DialCallStatus=no-answer&DialWhomNumber=09811100001'), `${C},${D}`);
});

t.test(
  "a supervisor sets an agent available: an on_call whose end never came and a wrap-up are over, and the lost call's leg does not make them busy again",
  async (t) => {
    const ctx = await setup(t, { sales: { wrapUpSeconds: 300 } });
    const available = () => ctx.admin({ method: 'PUT', url: `/admin/agents/${enc(A)}/availability`, payload: { status: 'available' } });
    // A answers call l1, whose end Exotel never reports (a lost webhook)
    const l1 = await connect(ctx, 'agents', 'CallSid=l1');
    t.same(l1.destination.numbers, [A, B, C]);
    for (const ev of ['Status=busy&EventType=Dial', 'Status=busy&EventType=Answered']) {
      t.equal((await event(ctx, `CallSid=l1&DialWhomNumber=09811100001&${ev}&${eventsQuery(l1)}`)).statusCode, 200);
    }
    t.match(await agent(ctx, A), { state: 'on_call', onCall: { callSid: 'l1' } });
    t.same((await connect(ctx, 'agents', 'CallSid=l2')).destination.numbers, [B, C], 'on a call: not offered');
    // the supervisor knows A is free
    t.equal((await available()).statusCode, 200);
    t.match(await agent(ctx, A), { state: 'available', onCall: null }, 'no longer on a call');
    const l3 = await connect(ctx, 'agents', 'CallSid=l3');
    t.same(l3.destination.numbers, [A, B, C], 'offered again at once');
    // A takes l3; its end starts the wrap-up, and does not put A back on the lost call l1
    for (const ev of ['Status=busy&EventType=Dial', 'Status=busy&EventType=Answered', 'Status=free&EventType=Terminal']) {
      t.equal((await event(ctx, `CallSid=l3&DialWhomNumber=09811100001&${ev}&${eventsQuery(l3)}`)).statusCode, 200);
    }
    t.match(await agent(ctx, A), { state: 'wrapping_up', onCall: null }, "l3's end: wrapping up, not on the lost call l1");
    // the supervisor ends the wrap-up
    t.equal((await available()).statusCode, 200);
    t.match(await agent(ctx, A), { state: 'available', wrapUpUntil: null });
    t.same((await connect(ctx, 'agents', 'CallSid=l4')).destination.numbers, [A, B, C], 'offered again at once');
  },
);
