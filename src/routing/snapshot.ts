import type { Connect, DialGroup } from '../schemas/dial-group.js';
import type { Flow } from '../schemas/flow.js';
import type { ScheduleRules } from '../schemas/schedule.js';
import type { Availability } from '../schemas/agent.js';

/**
 * The shape every decision reads. Routing owns it; src/store/rules-snapshot.ts builds it from
 * Postgres and keeps the current one.
 */

export interface VipMember {
  /** epoch ms after which the entry no longer matches; null = never */
  expiresAt: number | null;
}

/** A dial group as stored and answered: settings complete, members by priority then number. */
export type StoredDialGroup = DialGroup & { connect: Connect };

/**
 * Everything a decision needs, held in memory: a live call never waits on a rules query.
 * Immutable once built; a reload builds a new one and swaps it in.
 */
export interface RulesSnapshot {
  version: number;
  loadedAt: Date;
  flows: Map<string, Flow>;
  /** list slug → E.164 number → entry */
  vipLists: Map<string, Map<string, VipMember>>;
  schedules: Map<string, ScheduleRules>;
  dialGroups: Map<string, StoredDialGroup>;
  /** agent number → away/available as last set (numbers never set are absent) */
  availability: Map<string, Availability>;
}
