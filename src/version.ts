// What `sg-agent --version` reports: this package, its native binary, and the kernel's ipset protocol.
import { native } from './addon/native.js';
import { packageVersion } from './package-version.js';
import { fromNative } from './addon/errors.js';

export interface VersionReport {
  package: string;
  native: string;
  /** The kernel's ipset protocol, or why it could not be asked (no CAP_NET_ADMIN, no ip_set module). */
  ipsetProtocol: number | string;
}

export async function versionReport(netns?: string): Promise<VersionReport> {
  let ipsetProtocol: number | string;
  try {
    ipsetProtocol = await native.ipsetProtocol(netns ?? null);
  } catch (e) {
    const err = fromNative(e, 'ipset');
    ipsetProtocol = err.code === 'PERMISSION_DENIED' ? 'unavailable (needs CAP_NET_ADMIN)' : `unavailable (${err.message})`;
  }
  return { package: packageVersion(), native: native.nativeVersion(), ipsetProtocol };
}

export function formatVersion(r: VersionReport): string {
  return `sg-agent ${r.package} (native ${r.native}, kernel ipset protocol ${r.ipsetProtocol})`;
}
