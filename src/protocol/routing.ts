// Where messages go. Routing keys are derived from ids (a hash), never copied: an id is free text
// that could hold '.', '#' or 255 bytes, and none of that may change who receives what.
import { createHash } from 'node:crypto';

/** Direct exchange carrying group updates (rules, members, deletion), one routing key per group. */
export const GROUP_EXCHANGE = 'sg.groups';
/** Direct exchange carrying port bindings, one routing key per host. */
export const HOST_EXCHANGE = 'sg.hosts';
/** Shared queue the controllers consume sync requests from. */
export const SYNC_QUEUE = 'sg.sync';
/** Malformed messages end here (agents nack them without requeue). */
export const DEAD_LETTER_EXCHANGE = 'sg.dead';
export const DEAD_LETTER_QUEUE = 'sg.dead';

const h = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex').slice(0, 32);

export function groupKey(groupId: string): string {
  return `g.${h(groupId)}`;
}
export function hostKey(host: string): string {
  return `h.${h(host)}`;
}
/** The agent's own queue: durable with an expiry, so bindings survive a reconnect but not a host gone for good. */
export function agentQueue(host: string): string {
  return `sg.agent.${h(host)}`;
}
