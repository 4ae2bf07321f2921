/** What a dial event says about an agent (src/routing/dial/event.ts). */
import t from 'tap';
import { agentEvent } from '../../../src/routing/dial/event.js';

t.test('Status and EventType: busy, free, being dialed, answered', async (t) => {
  const cases: Array<[string | null, string | null, { busy: boolean | null; dialed: boolean; answered: boolean }]> = [
    ['busy', null, { busy: true, dialed: true, answered: false }],
    ['busy', 'Dial', { busy: true, dialed: true, answered: false }],
    ['busy', 'answered', { busy: true, dialed: false, answered: true }],
    ['busy', 'Answered', { busy: true, dialed: false, answered: true }],
    ['busy', '', { busy: true, dialed: false, answered: false }],
    ['free', 'terminal', { busy: false, dialed: false, answered: false }],
    ['free', null, { busy: false, dialed: false, answered: false }],
    [null, 'answered', { busy: null, dialed: false, answered: true }],
    ['unknown', 'dial', { busy: null, dialed: false, answered: false }],
  ];
  for (const [status, eventType, want] of cases) t.same(agentEvent({ status, eventType }), want, `Status ${status}, EventType ${eventType}`);
});
