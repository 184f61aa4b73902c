// A free TCP port on loopback, for servers a test, a benchmark or the demo starts.
//
// Why not simply `listen(0)`: the kernel answers with a port from the ephemeral range, the same range
// it draws from for every outgoing connection on the machine. Between our close and the server's own
// bind, a client anywhere (another test file's AMQP or etcd connection) may be given that very port as
// its source, and the server then fails with EADDRINUSE (CI saw etcd do so). A port below the
// ephemeral range is never handed out that way, so we pick one there at random, check it binds, and
// never hand the same one out twice in a process.
import fs from 'node:fs';
import net from 'node:net';

const handedOut = new Set<number>();
/** Lowest port we pick from: above the usual registered services, below the ephemeral range. */
const LOWEST = 20_000;
/** Not picked: RabbitMQ nodes take their distribution port at their AMQP port + 20,000, a port
 *  free now but bound when such a node starts (the machine's own node at 25672; the tests'
 *  three-node cluster, test/helpers/cluster.ts, at 25701–25703). */
const RABBIT_DISTRIBUTION = { from: 25_000, to: 25_999 };

function ephemeralLow(): number {
  try {
    const [low] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    const n = Number(low);
    return Number.isInteger(n) && n > 0 ? n : 32_768;
  } catch {
    return 32_768;
  }
}

function bindsOn(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => s.close(() => resolve(true)));
  });
}

function kernelChosenPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

export async function freePort(): Promise<number> {
  const high = ephemeralLow() - 1;
  // A machine whose ephemeral range starts low leaves no room below it: let the kernel choose.
  if (high - LOWEST < 1_000) return kernelChosenPort();
  for (let attempt = 0; attempt < 200; attempt++) {
    const p = LOWEST + Math.floor(Math.random() * (high - LOWEST + 1));
    if (handedOut.has(p) || (p >= RABBIT_DISTRIBUTION.from && p <= RABBIT_DISTRIBUTION.to)) continue;
    if (await bindsOn(p)) {
      handedOut.add(p);
      return p;
    }
  }
  return kernelChosenPort();
}
