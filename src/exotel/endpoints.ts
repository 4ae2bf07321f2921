import type { FlowType } from '../schemas/flow.js';

/** Where Exotel's callbacks are served: `/exotel/<endpoint>/<flow>`, and `/exotel/dial-events`. */
export const CALLBACK_PREFIX = '/exotel';
/** Why a callback URL written with capitals (`/Exotel/passthru/…`, `/exotel/Passthru/…`) is no endpoint: paths are matched as they are. */
export const LOWERCASE_URLS = `callback URLs are lowercase: ${CALLBACK_PREFIX}/<endpoint>/<flow>, as the flow's exotelUrls give it`;

/**
 * Exotel's callback endpoints. Routes, CDRs, metrics labels, the simulator and the OpenAPI document
 * take their names from this list.
 */
export const CALLBACK_ENDPOINTS = ['passthru', 'switch', 'dial-whom', 'connect', 'dial-events'] as const;
export type CallbackEndpoint = (typeof CALLBACK_ENDPOINTS)[number];

/** The endpoints that answer from a flow, each from flows of one type; dial-events has no flow. */
export type FlowEndpoint = Exclude<CallbackEndpoint, 'dial-events'>;
export const FLOW_TYPE_OF = { passthru: 'passthru', switch: 'switch', 'dial-whom': 'dial', connect: 'dial' } as const satisfies Record<FlowEndpoint, FlowType>;
export const FLOW_ENDPOINTS = CALLBACK_ENDPOINTS.filter((e): e is FlowEndpoint => e !== 'dial-events');

/** Dial Whom and Connect: who to ring, with per-call state. */
export type DialEndpoint = { [E in FlowEndpoint]: (typeof FLOW_TYPE_OF)[E] extends 'dial' ? E : never }[FlowEndpoint];
export const isDialEndpoint = (e: FlowEndpoint): e is DialEndpoint => FLOW_TYPE_OF[e] === 'dial';

/** What a CDR, the log and the metrics call a path under the prefix that names no endpoint. */
export const UNKNOWN_ENDPOINT = 'unknown';

/** The endpoint a path segment names, or 'unknown' (a refused URL under the prefix is logged too). */
export const endpointNamed = (segment: string | undefined): CallbackEndpoint | typeof UNKNOWN_ENDPOINT =>
  CALLBACK_ENDPOINTS.find((e) => e === segment) ?? UNKNOWN_ENDPOINT;
