// When a test may assert a drop: once the host holds what the controller's store says. A drop waited
// for with a probe ends early on a probe that failed for another reason (a slow machine, a lost
// packet) before the agent did anything; a drop asserted after this shows the filter in place.

/** What an agent's `/status` says of the state it holds. */
export interface HostView {
  ports: { id: string; revision: number; inKernel: boolean }[];
  groups: { id: string; rulesNeeded: boolean; membersNeeded: boolean; rulesRevision: number | null; membersRevision: number | null }[];
  sets: { pending?: true }[];
}

/** The controller's store, read through its admin API. */
export interface StoreView {
  ports(): Promise<{ id: string; host: string; revision: number }[]>;
  /** A group's revisions, or undefined when the store has no such group. */
  group(id: string): Promise<{ revision: number; membersRevision: number } | undefined>;
}

/** Whether agent `host` (its status `view`) holds the store's state: every port the store binds to it
 *  at the store's revision with its filter in the kernel, every group it is bound to at the store's
 *  rules and member revisions (those it needs), and no set change waiting. */
export async function holdsStore(view: HostView, host: string, store: StoreView): Promise<boolean> {
  for (const p of (await store.ports()).filter((x) => x.host === host))
    if (!view.ports.some((x) => x.id === p.id && x.revision === p.revision && x.inKernel)) return false;
  for (const g of view.groups) {
    const s = await store.group(g.id);
    if (!s) continue;
    if (g.rulesNeeded && g.rulesRevision !== s.revision) return false;
    if (g.membersNeeded && (g.membersRevision ?? 0) !== s.membersRevision) return false;
  }
  return !view.sets.some((x) => x.pending);
}
