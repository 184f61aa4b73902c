// Broker permissions per role, derived from the routing names (routing.ts) so that the two cannot
// drift apart. RabbitMQ grants configure/write/read per vhost as regular expressions over resource
// names, exchanges and queues alike; each expression below is anchored and lists exact names.
//
// What each operation needs (RabbitMQ access control): declaring or deleting a queue → configure on
// it; declaring it with a dead-letter exchange → also write on that exchange; binding → write on the
// queue and read on the exchange; consuming → read on the queue; publishing → write on the exchange
// (the default exchange is `amq.default`). Passive declarations (existence checks) need nothing.
import {
  agentQueue,
  DEAD_LETTER_EXCHANGE,
  DEAD_LETTER_QUEUE,
  GROUP_EXCHANGE,
  HOST_EXCHANGE,
  LEADER_QUEUE,
  SYNC_EXCHANGE,
  SYNC_QUEUE,
} from './routing.js';

export interface BrokerPermissions {
  configure: string;
  write: string;
  read: string;
}

const escape = (name: string) => name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const only = (...names: string[]) => `^(${[...new Set(names)].map(escape).join('|')})$`;

/** An agent: its own queue (declare, delete, bind, consume), sync requests through the sync exchange,
 *  bindings from the group and host exchanges, and the dead-letter exchange its queue names. It may
 *  not publish to the group, host or default exchange, nor touch another host's queue. */
export function agentPermissions(host: string): BrokerPermissions {
  const q = agentQueue(host);
  return {
    configure: only(q),
    // The dead-letter exchange is here because RabbitMQ requires write on it to declare a queue that
    // names it; what an agent could publish there is bounded by the queue's length limits.
    write: only(q, SYNC_EXCHANGE, DEAD_LETTER_EXCHANGE),
    read: only(q, GROUP_EXCHANGE, HOST_EXCHANGE),
  };
}

/** A controller: declares the exchanges and shared queues and its leadership lease (an exclusive
 *  queue: declaring it needs configure alone), publishes updates, consumes sync requests and answers
 *  them through direct reply-to (which goes through the default exchange). An agent cannot take the
 *  lease: it may configure its own queue only. */
export function controllerPermissions(): BrokerPermissions {
  return {
    configure: only(GROUP_EXCHANGE, HOST_EXCHANGE, SYNC_EXCHANGE, SYNC_QUEUE, DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, LEADER_QUEUE),
    write: only(GROUP_EXCHANGE, HOST_EXCHANGE, SYNC_QUEUE, DEAD_LETTER_QUEUE, 'amq.default'),
    read: only(SYNC_EXCHANGE, SYNC_QUEUE, DEAD_LETTER_EXCHANGE),
  };
}
