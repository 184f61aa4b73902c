// A relay in front of the tests' RabbitMQ node that ends a client's connection at a chosen point of its
// AMQP conversation: when the client sends a given method, that frame is held back and both sockets
// end, as when the broker drops a connection for missed heartbeats (no close handshake, the socket just
// goes). A cut from the broker's side (rabbitmqctl close_connection) cannot be aimed at one frame.
import net from 'node:net';
import { freePort } from './net.js';

/** AMQP 0-9-1 methods by class and method id (the spec's numbering). */
export const CHANNEL_CLOSE = { classId: 20, methodId: 40 } as const;
export const QUEUE_BIND = { classId: 50, methodId: 20 } as const;

const PROTOCOL_HEADER_BYTES = 8;
/** Frame: type (1), channel (2), payload size (4), payload, frame end (1). */
const FRAME_OVERHEAD = 8;
const METHOD_FRAME = 1;

export interface AmqpCutter {
  /** `url` (the tests' node) with its port replaced by the relay's. */
  via: (url: string) => string;
  /** Resolves once a connection through the relay was cut as its client sent `method` (the next one
   *  after this call, on any channel). */
  cutOn(method: { classId: number; methodId: number }): Promise<void>;
  close(): void;
}

export async function amqpCutter(brokerPort: number): Promise<AmqpCutter> {
  const port = await freePort();
  const sockets = new Set<net.Socket>();
  let armed: { classId: number; methodId: number; cut(): void } | undefined;
  const server = net.createServer((client) => {
    const upstream = net.connect(brokerPort, '127.0.0.1');
    for (const x of [client, upstream]) {
      sockets.add(x);
      x.on('error', () => undefined);
      x.on('close', () => {
        sockets.delete(x);
        client.destroy();
        upstream.destroy();
      });
    }
    upstream.pipe(client);
    let unread = Buffer.alloc(0);
    let headerPassed = false;
    client.on('data', (chunk: Buffer) => {
      unread = Buffer.concat([unread, chunk]);
      if (!headerPassed) {
        if (unread.length < PROTOCOL_HEADER_BYTES) return;
        upstream.write(unread.subarray(0, PROTOCOL_HEADER_BYTES));
        unread = unread.subarray(PROTOCOL_HEADER_BYTES);
        headerPassed = true;
      }
      while (unread.length >= FRAME_OVERHEAD - 1) {
        const size = unread.readUInt32BE(3);
        if (unread.length < size + FRAME_OVERHEAD) return;
        const frame = unread.subarray(0, size + FRAME_OVERHEAD);
        unread = unread.subarray(size + FRAME_OVERHEAD);
        const target = armed;
        if (target && frame[0] === METHOD_FRAME && frame.readUInt16BE(7) === target.classId && frame.readUInt16BE(9) === target.methodId) {
          armed = undefined;
          client.destroy();
          upstream.destroy();
          return target.cut();
        }
        upstream.write(frame);
      }
    });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  return {
    via: (url) => {
      const u = new URL(url);
      u.port = String(port);
      return u.toString();
    },
    cutOn: (method) => new Promise((cut) => (armed = { ...method, cut })),
    close: () => {
      server.close();
      for (const x of sockets) x.destroy();
    },
  };
}
