// The machine's own RabbitMQ (rabbit@<host> on 5672), for the benchmarks and the demo that use it:
// started (`rabbitmq-server -detached`) when none answers on localhost. Tests never use it: they have a
// node of their own (test-broker.ts), which they may restart.
import { spawnSync } from 'node:child_process';
import net from 'node:net';

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function ensureRabbit(): Promise<void> {
  if (await portOpen(5672)) return waitReady();
  spawnSync('rabbitmq-server', ['-detached'], { stdio: 'ignore' });
  await waitReady();
}

async function waitReady(): Promise<void> {
  for (let i = 0; i < 120; i++) {
    if (spawnSync('rabbitmq-diagnostics', ['-q', 'check_port_connectivity'], { stdio: 'ignore', timeout: 20_000 }).status === 0) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error('RabbitMQ did not become ready');
}
