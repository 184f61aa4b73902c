// Where messages go. Routing keys are derived from ids (a hash), never copied: an id is free text
// that could hold '.', '#' or 255 bytes, and none of that may change who receives what.
// The controller declares every exchange and shared queue below; agents only check that they exist.
import { createHash } from 'node:crypto';

/** Direct exchange carrying group updates (rules, members, deletion), one routing key per group. */
export const GROUP_EXCHANGE = 'sg.groups';
/** Direct exchange carrying port bindings, one routing key per host. */
export const HOST_EXCHANGE = 'sg.hosts';
/** Direct exchange agents publish sync requests to: an agent needs write permission on it alone, not
 *  on the default exchange (which would let it publish into any queue, another host's included). */
export const SYNC_EXCHANGE = 'sg.sync';
export const SYNC_ROUTING_KEY = 'sync.request';
/** Shared queue the controllers consume sync requests from. Its name differs from the exchange's:
 *  broker permissions match names, and write on the exchange must not grant write on the queue. A
 *  quorum queue (replicated), so that a broker node lost takes no controller's and no agent's sync
 *  with it; the name says so because a queue's type cannot change under the name it was declared with
 *  (the classic `sg.sync.requests` of earlier versions may be deleted). */
export const SYNC_QUEUE = 'sg.sync.requests.quorum';
export const SYNC_QUEUE_ARGS = { 'x-queue-type': 'quorum' } as const;
/** The controllers' leadership lease: an exclusive queue, held by the one controller connection that
 *  declared it and dropped by the broker with that connection. Its holder alone publishes updates. */
export const LEADER_QUEUE = 'sg.controller.leader';
/** Malformed and unauthenticated messages end here (agents nack them without requeue). */
export const DEAD_LETTER_EXCHANGE = 'sg.dead';
/** Named apart from its exchange for the same reason as the sync queue. */
export const DEAD_LETTER_QUEUE = 'sg.dead.letters';
/** The dead-letter queue keeps the newest of what was refused, within these bounds: it is evidence for
 *  an operator, not a store, and a flood of refusals (or one huge message) must not fill the broker. */
export const DEAD_LETTER_LIMITS = { messages: 10_000, bytes: 16 << 20 } as const;
/** Declared arguments of the dead-letter queue (RabbitMQ refuses a redeclaration with others). */
export const DEAD_LETTER_QUEUE_ARGS = {
  'x-max-length': DEAD_LETTER_LIMITS.messages,
  'x-max-length-bytes': DEAD_LETTER_LIMITS.bytes,
  'x-overflow': 'drop-head',
} as const;

const h = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex').slice(0, 32);

export function groupKey(groupId: string): string {
  return `g.${h(groupId)}`;
}
export function hostKey(host: string): string {
  return `h.${h(host)}`;
}
/** The agent's own queue: exclusive to its connection, declared again (by this name) with every session. */
export function agentQueue(host: string): string {
  return `sg.agent.${h(host)}`;
}
