import type { FlowType } from '../schemas/flow.js';
import { CALLBACK_PREFIX, FLOW_ENDPOINTS, FLOW_TYPE_OF, type FlowEndpoint } from './endpoints.js';

/** The applet URL(s) Exotel is given for a flow, by the flow's type: what a support lead pastes into the flow builder. */
export interface CallbackUrls {
  /** Passthru applet (sync): 200 → branch A, 302 → branch B. */
  passthru?: string;
  /** Passthru applet followed by a Switch-case applet. */
  switch?: string;
  /** Connect applet → Dial whom → "Dial phone number (or phone number returned by URL)", fetch after every attempt. */
  dialWhom?: string;
  /** Connect applet → "Connect using an application URL" (Connect parameters v1.0). */
  connect?: string;
}

/** What a viewer key sees in place of the callback secret. */
export const HIDDEN_SECRET = '***';

/** `dial-whom` → `dialWhom`: the key of an endpoint's URL. */
const keyOf = (endpoint: FlowEndpoint) => endpoint.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()) as keyof CallbackUrls;

/**
 * The URLs for a flow on this deployment (`PUBLIC_URL`): one for each endpoint that answers from
 * flows of its type. With a callback secret configured they carry it as `token` — the form every
 * applet URL field accepts — or, for a reader who may not see it, `token=***`.
 */
export function callbackUrls(publicUrl: string, flow: { slug: string; type: FlowType }, secret: string | undefined, showSecret: boolean): CallbackUrls {
  const query = secret ? `?token=${showSecret ? encodeURIComponent(secret) : HIDDEN_SECRET}` : '';
  const urls: CallbackUrls = {};
  for (const endpoint of FLOW_ENDPOINTS) {
    if (FLOW_TYPE_OF[endpoint] === flow.type) urls[keyOf(endpoint)] = `${publicUrl}${CALLBACK_PREFIX}/${endpoint}/${encodeURIComponent(flow.slug)}${query}`;
  }
  return urls;
}
