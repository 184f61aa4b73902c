// Public entry point of the sg-agent package.
export { IpsetClient, MemberList, tempSetName } from './addon/ipset.js';
export type { BatchResult, IpFamily, ReconcileResult, SetHeader, SetSpec, SetType, SyncResult } from './addon/ipset.js';
export { IpsetError, NativeError } from './addon/errors.js';
export type { IpsetErrorCode, NativeErrorCode } from './addon/errors.js';
export type {
  Port,
  PortInput,
  SecurityGroup,
  SecurityGroupInput,
  SecurityGroupRule,
  SecurityGroupRuleInput,
  AllowedAddressPair,
  Direction,
  Ethertype,
} from './domain/model.js';
// The one validator of the model (the controller's API, the store, the wire decoder and the engine use it).
export { validateGroup, validatePort, validateRule, validateMember, ValidationError } from './domain/validate.js';
export { PROTOCOL_NUMBERS } from './domain/protocols.js';
export { NativeBindingError } from './addon/native.js';
export { versionReport, formatVersion } from './version.js';
export { checkOwnCapabilities, missingCapabilities } from './capabilities.js';
// For control-plane integrators: the wire protocol, its routing, the publisher and the sync server.
export { decode, encode, MalformedMessage, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, LIMITS } from './protocol/messages.js';
export type {
  AnyMessage,
  UpdateMessage,
  GroupMembersMessage,
  GroupRulesMessage,
  GroupDeletedMessage,
  PortMessage,
  PortUnboundMessage,
  SyncRequest,
  SyncReply,
  GroupSnapshot,
  MembersSnapshot,
  WirePort,
  MessageType,
  Quarantined,
} from './protocol/messages.js';
export {
  GROUP_EXCHANGE,
  HOST_EXCHANGE,
  SYNC_EXCHANGE,
  SYNC_ROUTING_KEY,
  SYNC_QUEUE,
  DEAD_LETTER_EXCHANGE,
  DEAD_LETTER_QUEUE,
  groupKey,
  hostKey,
  agentQueue,
} from './protocol/routing.js';
export { MessageSigner, MessageVerifier, Keyring, generateSigningKey, KEY_ID_HEADER, SIGNATURE_HEADER } from './protocol/signing.js';
export type { SignedContext, Refusal } from './protocol/signing.js';
export { agentPermissions, controllerPermissions } from './protocol/permissions.js';
export type { BrokerPermissions } from './protocol/permissions.js';
export { Publisher, declareTopology, coalesceUpdates } from './controller/publisher.js';
export { buildSync, serveSync } from './controller/rpc.js';
export type { SyncSource } from './controller/rpc.js';
export { Store } from './controller/store.js';
export type { GroupRecord, PortRecord, MemberChange, OutboxEntry } from './controller/store.js';
export { Controller } from './controller/controller.js';
export type { ControllerOptions } from './controller/controller.js';
