// `sg-controller store export|import`: the whole store as one JSON document (records.ts'
// StoreSnapshot: groups with their revisions, ports, member counts, security-group log resources,
// unpublished messages), for a backup, a restore, and moving from LMDB to etcd while agents keep
// running (docs/agent.md, "Moving to etcd"). An import makes the store equal to the document, writing
// only what differs, so a second import after the first (the last changes, once the old controllers
// are stopped) is short.
import fs from 'node:fs';
import type { ControllerConfig } from './config.js';
import { etcdStoreOptions } from './config.js';
import { EtcdStore } from './etcd-store.js';
import { checkSnapshot, type ControllerStore, type StoreSnapshot } from './records.js';
import { Store } from './store.js';
import { ConfigError } from '../settings.js';

const counts = (s: StoreSnapshot) =>
  `${s.groups.length} groups, ${s.ports.length} ports, ${s.logResources?.length ?? 0} log resources, ` +
  `${s.outbox.length} unpublished messages`;

export async function openConfiguredStore(cfg: ControllerConfig): Promise<ControllerStore> {
  return cfg.store.kind === 'etcd' ? EtcdStore.open(etcdStoreOptions(cfg.store.etcd)) : Store.open(cfg.dataDir);
}

/** The store as JSON (one snapshot), to `file` or standard output. */
export async function exportStore(cfg: ControllerConfig, file: string | undefined): Promise<string> {
  const store = await openConfiguredStore(cfg);
  try {
    const snap = store.snapshot();
    const text = `${JSON.stringify(snap)}\n`;
    if (file) fs.writeFileSync(file, text, { mode: 0o600 });
    else process.stdout.write(text);
    return `exported ${counts(snap)} from the ${store.kind} store`;
  } finally {
    await store.close();
  }
}

/** Makes the configured store equal to the export in `file` (or standard input). Refused while a
 *  controller leads on that store (it would publish a store half written), unless `force`. */
export async function importStore(cfg: ControllerConfig, file: string | undefined, force: boolean): Promise<string> {
  const from = file ?? 'standard input';
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file ?? 0, 'utf8'));
  } catch (e) {
    throw new ConfigError(
      `${from}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : `not JSON (${(e as Error).message})`}`,
    );
  }
  let snap;
  try {
    snap = checkSnapshot(parsed, from);
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  const store = await openConfiguredStore(cfg);
  try {
    if (store instanceof EtcdStore && !force) {
      const leader = await store.client.get(store.keyOf('leader').toString());
      if (leader !== null)
        throw new ConfigError(
          `a controller runs on this etcd store (it holds the leadership: ${leader}); stop the controllers first, or give --force`,
        );
    }
    await store.restore(snap);
    return `imported ${counts(snap)} into the ${store.kind} store`;
  } finally {
    await store.close();
  }
}
