/** What one dial event (dial_passthru_event_url) says about the agent it names. */
export interface AgentEvent {
  /** Status busy → true, free → false, anything else → unknown (the agent's state is kept) */
  busy: boolean | null;
  /** the agent is being dialed now: least_recent counts from here */
  dialed: boolean;
  /** the agent answered: the caller is connected to it (sticky) */
  answered: boolean;
}

export function agentEvent(ev: { status: string | null; eventType: string | null }): AgentEvent {
  const busy = ev.status === 'busy' ? true : ev.status === 'free' ? false : null;
  const type = ev.eventType?.toLowerCase() ?? null;
  return { busy, dialed: busy === true && (type === null || type === 'dial'), answered: type === 'answered' };
}
