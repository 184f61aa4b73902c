// A real RabbitMQ for tests: started (`rabbitmq-server -detached`) when none answers on localhost.
import { spawnSync } from 'node:child_process';
import net from 'node:net';

export const AMQP_URL = process.env.SG_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

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
