import t from 'tap';
import type { Test } from 'tap';
import { buildTestApp, type TestApp } from '../../helper.js';

const A = '+919811100001';
const B = '+919811100002';
const C = '+919811100003';
const D = '+919811100004';
const X = '+919811100011';
const Y = '+919811100012';

async function until(ok: () => boolean) {
  for (let i = 0; i < 300 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!ok()) throw new Error('snapshot did not catch up');
}

/** Dial groups (slug → strategy, members by priority, Connect settings) and a dial flow `agents` that rings `action`. */
async function setup(
  t: Test,
  groups: Record<string, { strategy: string; members: string[]; connect?: Record<string, unknown> }>,
  action: Record<string, unknown>,
) {
  const ctx = await buildTestApp(t, { PUBLIC_URL: 'https://exo.example.com' });
  for (const [slug, g] of Object.entries(groups)) {
    const res = await ctx.admin({
      method: 'POST',
      url: '/admin/dial-groups',
      payload: {
        slug,
        name: slug,
        strategy: g.strategy,
        members: g.members.map((number, i) => ({ number, priority: i + 1 })),
        ...(g.connect ? { connect: g.connect } : {}),
      },
    });
    t.equal(res.statusCode, 201, `group ${slug} created`);
  }
  const flow = await ctx.admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { slug: 'agents', name: 'Agents', type: 'dial', rules: [], otherwise: action, onError: { numbers: ['+919800000099'] } },
  });
  t.equal(flow.statusCode, 201, 'flow created');
  await until(() => ctx.app.rules.current?.flows.has('agents') === true && Object.keys(groups).every((g) => ctx.app.rules.current!.dialGroups.has(g)));
  return ctx;
}

const connect = async (ctx: TestApp, query: string): Promise<string[]> =>
  (await ctx.app.inject({ method: 'GET', url: `/exotel/connect/agents?CallFrom=09800000001&${query}` })).json().destination.numbers;
const event = (ctx: TestApp, query: string) =>
  ctx.app.inject({ method: 'GET', url: `/exotel/dial-events?CallFrom=09800000002&Direction=outbound-dial&${query}` });
/** `who` on a call of another caller (busy), or that call ended (free). */
const onCall = (ctx: TestApp, who: string, sid = 'other') => event(ctx, `CallSid=${sid}&DialWhomNumber=${who}&Status=busy&EventType=Dial`);
const hungUp = (ctx: TestApp, who: string, sid = 'other') => event(ctx, `CallSid=${sid}&DialWhomNumber=${who}&Status=free&EventType=Terminal`);
/** A leg of `sid` to `who` that rang out (Dial, then its end), reported by the Connect's events URL. */
async function rangOut(ctx: TestApp, sid: string, who: string) {
  await event(ctx, `CallSid=${sid}&DialWhomNumber=${who}&Status=busy&EventType=Dial&group=sales&flow=agents`);
  await event(ctx, `CallSid=${sid}&DialWhomNumber=${who}&Status=free&EventType=Terminal&group=sales&flow=agents`);
}

t.test('a hold loop back to the Connect whose request looks like the first: answered afresh, agents who just rang out after the one free now', async (t) => {
  const ctx = await setup(t, { sales: { strategy: 'sequential', members: [A, B, C, D], connect: { fetchAfterAttempt: false } } }, { dialGroup: 'sales' });
  await onCall(ctx, D);
  t.same(await connect(ctx, 'CallSid=h1'), [A, B, C], 'D is on a call');
  for (const who of [A, B, C]) await rangOut(ctx, 'h1', who);
  await hungUp(ctx, D);
  await onCall(ctx, B, 'other2');
  // If nobody answers → a Greeting ("please hold") → the same Connect: nothing dialled is reported
  t.same(await connect(ctx, 'CallSid=h1'), [D, A, C], 'D, free now, first; B, on a call now, not offered; A and C, who just rang out, after D');
  t.same(await connect(ctx, 'CallSid=h1'), [D, A, C], 'a repeated poll of that answer gets it again');
});

t.test("a hold loop whose request reports the last number dialed: those the call's events saw rung go after the one free now", async (t) => {
  const ctx = await setup(t, { sales: { strategy: 'sequential', members: [A, B, C, D], connect: { fetchAfterAttempt: false } } }, { dialGroup: 'sales' });
  await onCall(ctx, D);
  t.same(await connect(ctx, 'CallSid=h2'), [A, B, C], 'D is on a call');
  for (const who of [A, B, C]) await rangOut(ctx, 'h2', who);
  await hungUp(ctx, D);
  t.same(await connect(ctx, 'CallSid=h2&DialCallStatus=no-answer&DialWhomNumber=09811100003'), [D, A, B], 'D first; A and B rang out already');
});

t.test('a hold loop with fetch after every attempt: pass 1 ends empty, the flow comes back: the agents are rung again, a fresh pass', async (t) => {
  const ctx = await setup(t, { sales: { strategy: 'sequential', members: [A, B, C] } }, { dialGroup: 'sales' });
  t.same(await connect(ctx, 'CallSid=h3'), [A, B, C]);
  await rangOut(ctx, 'h3', A);
  t.same(await connect(ctx, 'CallSid=h3&DialCallStatus=no-answer&DialWhomNumber=09811100001'), [B, C]);
  await rangOut(ctx, 'h3', B);
  t.same(await connect(ctx, 'CallSid=h3&DialCallStatus=no-answer&DialWhomNumber=09811100002'), [C]);
  await rangOut(ctx, 'h3', C);
  t.same(await connect(ctx, 'CallSid=h3&DialCallStatus=no-answer&DialWhomNumber=09811100003'), [], 'everyone tried: Exotel moves on');
  await onCall(ctx, B);
  // If nobody answers → Greeting → the same Connect, its request as the first's
  t.same(await connect(ctx, 'CallSid=h3'), [A, C], 'back from the hold loop: rung again, but B, on a call now');
  t.same(await connect(ctx, 'CallSid=h3'), [A, C], 'a repeated poll of that answer gets it again');
  await hungUp(ctx, B);
  t.same(
    await connect(ctx, 'CallSid=h3&DialCallStatus=no-answer&DialWhomNumber=09811100001'),
    [B, C],
    'the new pass re-fetches as the first did: B is free again',
  );
});

t.test("overflow tiers: a later tier's round-robin turns are taken only by calls that reach it", async (t) => {
  const ctx = await setup(
    t,
    { sales: { strategy: 'sequential', members: [A] }, support: { strategy: 'round_robin', members: [X, Y] } },
    { dialGroups: ['sales', 'support'] },
  );
  for (const sid of ['t1', 't2', 't3']) t.same(await connect(ctx, `CallSid=${sid}`), [A], 'sales answers');
  await onCall(ctx, A);
  t.same(await connect(ctx, 'CallSid=t4'), [X, Y], "support's first call: its first turn");
  t.same(await connect(ctx, 'CallSid=t5'), [Y, X], 'its second');
  await hungUp(ctx, A);
  t.same(await connect(ctx, 'CallSid=t1&DialCallStatus=no-answer&DialWhomNumber=09811100001'), [X, Y], 't1 reaches support after A rang out: the third turn');
  t.same(await connect(ctx, 'CallSid=t6'), [A], 'sales answers');
  t.same(await connect(ctx, 'CallSid=t6&DialCallStatus=no-answer&DialWhomNumber=09811100001'), [Y, X], 'the fourth');
});

t.test("round robin: a caller who found everyone busy and comes back from a hold loop gets the rotation's turn, not the group's priority order", async (t) => {
  const ctx = await setup(t, { sales: { strategy: 'round_robin', members: [A, B, C] } }, { dialGroup: 'sales' });
  t.same(await connect(ctx, 'CallSid=r1'), [A, B, C], 'turn 0');
  for (const who of [A, B, C]) await onCall(ctx, who);
  t.same(await connect(ctx, 'CallSid=r2'), [], 'everyone busy');
  for (const who of [A, B, C]) await hungUp(ctx, who);
  t.same(await connect(ctx, 'CallSid=r2'), [B, C, A], 'back from the hold loop: the next turn, B');
  t.same(await connect(ctx, 'CallSid=r3'), [C, A, B], 'and the next caller the one after');
});
