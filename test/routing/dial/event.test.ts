/** What a dial event says about an agent (src/routing/dial/event.ts). */
import t from 'tap';
import { agentEvent } from '../../../src/routing/dial/event.js';

t.test('Status and EventType: busy, free, being dialed, answered, ended', async (t) => {
  const cases: Array<[string | null, string | null, { busy: boolean | null; dialed: boolean; answered: boolean; ended: boolean }]> = [
    ['busy', null, { busy: true, dialed: true, answered: false, ended: false }],
    ['busy', 'Dial', { busy: true, dialed: true, answered: false, ended: false }],
    ['busy', 'answered', { busy: true, dialed: false, answered: true, ended: false }],
    ['busy', 'Answered', { busy: true, dialed: false, answered: true, ended: false }],
    ['busy', '', { busy: true, dialed: false, answered: false, ended: false }],
    ['free', 'terminal', { busy: false, dialed: false, answered: false, ended: true }],
    [null, 'Terminal', { busy: null, dialed: false, answered: false, ended: true }],
    ['free', null, { busy: false, dialed: false, answered: false, ended: true }],
    [null, 'answered', { busy: null, dialed: false, answered: true, ended: false }],
    ['unknown', 'dial', { busy: null, dialed: false, answered: false, ended: false }],
  ];
  for (const [status, eventType, want] of cases) t.same(agentEvent({ status, eventType }), want, `Status ${status}, EventType ${eventType}`);
});
