// Every size limit of the model and the wire, in one place. They are part of the contract: an input
// beyond one is refused, not allocated.

export const LIMITS = {
  /** Ids (groups, ports, rules, hosts) are free text of at most this many bytes in UTF-8. */
  id: 255,
  rulesPerGroup: 1000,
  /** Security-group logs one group carries (each applies to its ports). */
  logsPerGroup: 1000,
  /** Addresses in one member delta; larger changes go as several deltas or a sync. */
  deltaIps: 10_000,
  /** Addresses per group in one sync reply part. */
  syncIps: 50_000,
  portsPerReply: 5_000,
  groupsPerReply: 5_000,
  groupsPerPort: 64,
  /** Fixed IPs, and allowed address pairs, of one port (each). */
  ipsPerPort: 256,
  /** Distinct MACs of one port: its own and its allowed pairs'. One kernel rule compares a frame's
   *  source MAC, and the MAC a neighbour discovery message names, with every one of them: nf_tables
   *  takes at most 128 expressions a rule, and ip6tables-restore (iptables-nft) at most 32 u32
   *  matches (each ~2 KB in a netlink nest of at most 64 KiB), a length test and one a MAC. Neutron's
   *  default (10 allowed pairs a port) gives at most 11. */
  macsPerPort: 16,
} as const;

/** Interface names the kernel accepts (IFNAMSIZ - 1 bytes) that no rule syntax can misread. */
export const DEVICE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;
export const MAC_PATTERN = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;
