// Public entry point of the sg-agent package.
export { IpsetClient, IpsetError, measureDiff } from './ipset.js';
export type { BatchResult, IpFamily, IpsetErrorCode, ReconcileResult, SetHeader, SetSpec, SetType, SyncResult } from './ipset.js';
export type { Port, SecurityGroup, SecurityGroupRule, AllowedAddressPair, Direction, Ethertype, Protocol } from './model.js';
export { NativeBindingError } from './native.js';
export { versionReport, formatVersion } from './version.js';
export { checkOwnCapabilities, missingCapabilities } from './capabilities.js';
