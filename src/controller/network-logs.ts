// Security-group log resources (Neutron's `log`, resource type `security_group`) into the state of
// the groups concerned: each group carries the logs that apply to its ports, and routing does the
// rest (a group's state goes to the hosts that bound its key, as its rules do). A log of a group logs
// that group's ports; one of a port (and no group) is carried by each of the port's groups, for that
// port alone; one naming both, by the group, for that port; one naming neither, by every group of its
// project — Neutron's meaning (neutron/services/logapi/common/db_api.py: `_get_ports_being_logged`,
// `_get_sg_ids_log_for_port`). Disabled logs are carried by none, nor is a group that does not exist
// (yet, or any more): its creation brings them.
import type { LogResource, SecurityGroupLog } from '../domain/model.js';
import type { ControllerStore } from './records.js';

/** Groups of a project (Neutron mode: from Neutron's security groups; none otherwise). */
export type ProjectGroups = (projectId: string) => Iterable<string>;

/** What each group should carry, from the log resources and the ports' groups. */
export function groupLogsOf(
  logs: readonly LogResource[],
  portGroups: (portId: string) => readonly string[] | undefined,
  projectGroups: ProjectGroups = () => [],
): Map<string, SecurityGroupLog[]> {
  const out = new Map<string, SecurityGroupLog[]>();
  const carry = (group: string, l: LogResource, targetId: string | null) => {
    const list = out.get(group) ?? [];
    if (!list.some((x) => x.id === l.id)) list.push({ id: l.id, projectId: l.projectId, event: l.event, targetId });
    out.set(group, list);
  };
  for (const l of [...logs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
    if (!l.enabled) continue;
    if (l.resourceId !== null) carry(l.resourceId, l, l.targetId);
    else if (l.targetId !== null) for (const g of portGroups(l.targetId) ?? []) carry(g, l, l.targetId);
    else for (const g of projectGroups(l.projectId)) carry(g, l, null);
  }
  return out;
}

/** Brings every group's logs in the store to what the log resources say: writes (and announces) only
 *  the groups whose logs changed; returns how many did. */
async function applyLogResources(store: ControllerStore, projectGroups?: ProjectGroups): Promise<number> {
  const want = groupLogsOf(store.logResources(), (id) => store.port(id)?.securityGroups, projectGroups);
  let changed = 0;
  for (const [group, logs] of want) if (store.group(group) && (await store.putGroupLogs(group, logs))) changed++;
  // Groups that carry logs no resource asks for any more.
  for (const g of store.groups()) if (g.logs?.length && !want.has(g.id) && (await store.putGroupLogs(g.id, []))) changed++;
  return changed;
}

/** Runs applyLogResources one at a time: a run reads the store as the changes before it left it, so
 *  two changes made at once cannot leave a group with what only the older one saw. */
export class GroupLogsFollower {
  private last: Promise<number> = Promise.resolve(0);

  constructor(
    private readonly store: ControllerStore,
    private readonly projectGroups?: ProjectGroups,
  ) {}

  /** Resolves, with the groups it changed, once a run that started after this call has ended. */
  follow(): Promise<number> {
    const run = this.last.catch(() => 0).then(() => applyLogResources(this.store, this.projectGroups));
    this.last = run;
    return run;
  }
}
