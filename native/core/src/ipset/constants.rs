//! Numbers from include/uapi/linux/netfilter/ipset/ip_set.h and nfnetlink.h.

/// The protocol version we speak; the kernel may answer with 6 (the classic commands are unchanged).
pub const IPSET_PROTOCOL: u8 = 7;
pub const IPSET_PROTOCOL_MIN: u8 = 6;
pub const IPSET_MAXNAMELEN: usize = 32;

// Commands.
pub const IPSET_CMD_PROTOCOL: u8 = 1;
pub const IPSET_CMD_CREATE: u8 = 2;
pub const IPSET_CMD_DESTROY: u8 = 3;
pub const IPSET_CMD_FLUSH: u8 = 4;
pub const IPSET_CMD_RENAME: u8 = 5;
pub const IPSET_CMD_SWAP: u8 = 6;
pub const IPSET_CMD_LIST: u8 = 7;
pub const IPSET_CMD_SAVE: u8 = 8;
pub const IPSET_CMD_ADD: u8 = 9;
pub const IPSET_CMD_DEL: u8 = 10;
pub const IPSET_CMD_TEST: u8 = 11;
pub const IPSET_CMD_HEADER: u8 = 12;
pub const IPSET_CMD_TYPE: u8 = 13;

// Top-level (command) attributes.
pub const IPSET_ATTR_PROTOCOL: u16 = 1;
pub const IPSET_ATTR_SETNAME: u16 = 2;
pub const IPSET_ATTR_TYPENAME: u16 = 3;
pub const IPSET_ATTR_SETNAME2: u16 = IPSET_ATTR_TYPENAME;
pub const IPSET_ATTR_REVISION: u16 = 4;
pub const IPSET_ATTR_FAMILY: u16 = 5;
pub const IPSET_ATTR_FLAGS: u16 = 6;
pub const IPSET_ATTR_DATA: u16 = 7;
pub const IPSET_ATTR_ADT: u16 = 8;
pub const IPSET_ATTR_LINENO: u16 = 9;
pub const IPSET_ATTR_PROTOCOL_MIN: u16 = 10;
pub const IPSET_ATTR_REVISION_MIN: u16 = IPSET_ATTR_PROTOCOL_MIN;
pub const IPSET_ATTR_INDEX: u16 = 11;

// Attributes inside IPSET_ATTR_DATA, shared by create/list headers and elements (CADT).
pub const IPSET_ATTR_IP: u16 = 1;
pub const IPSET_ATTR_IP_TO: u16 = 2;
pub const IPSET_ATTR_CIDR: u16 = 3;
pub const IPSET_ATTR_PORT: u16 = 4;
pub const IPSET_ATTR_PORT_TO: u16 = 5;
pub const IPSET_ATTR_TIMEOUT: u16 = 6;
pub const IPSET_ATTR_PROTO: u16 = 7;
pub const IPSET_ATTR_CADT_FLAGS: u16 = 8;
pub const IPSET_ATTR_CADT_LINENO: u16 = IPSET_ATTR_LINENO;
pub const IPSET_ATTR_CADT_MAX: u16 = 16;
pub const IPSET_ATTR_MARK: u16 = 10;
pub const IPSET_ATTR_MARKMASK: u16 = 11;
/// Header of a set created with `bitmask` (hash:ip revision 6 and later kernels); newer than the
/// Debian uapi headers, from include/uapi/linux/netfilter/ipset/ip_set.h of Linux 6.1+.
pub const IPSET_ATTR_BITMASK: u16 = 12;
// Create / list-header specific.
pub const IPSET_ATTR_INITVAL: u16 = 17;
pub const IPSET_ATTR_HASHSIZE: u16 = 18;
pub const IPSET_ATTR_MAXELEM: u16 = 19;
pub const IPSET_ATTR_NETMASK: u16 = 20;
pub const IPSET_ATTR_BUCKETSIZE: u16 = 21;
pub const IPSET_ATTR_RESIZE: u16 = 22;
pub const IPSET_ATTR_SIZE: u16 = 23;
pub const IPSET_ATTR_ELEMENTS: u16 = 24;
pub const IPSET_ATTR_REFERENCES: u16 = 25;
pub const IPSET_ATTR_MEMSIZE: u16 = 26;
// Element (ADT) specific; note they reuse numbers of the create-only range.
pub const IPSET_ATTR_ETHER: u16 = 17;
pub const IPSET_ATTR_BYTES: u16 = 24;
pub const IPSET_ATTR_PACKETS: u16 = 25;
pub const IPSET_ATTR_COMMENT: u16 = 26;
pub const IPSET_ATTR_SKBMARK: u16 = 27;
pub const IPSET_ATTR_SKBPRIO: u16 = 28;
pub const IPSET_ATTR_SKBQUEUE: u16 = 29;
pub const IPSET_ATTR_PAD: u16 = 30;

// Nested inside IPSET_ATTR_IP.
pub const IPSET_ATTR_IPADDR_IPV4: u16 = 1;
pub const IPSET_ATTR_IPADDR_IPV6: u16 = 2;

// IPSET_ATTR_FLAGS bits of a list/save dump.
pub const IPSET_FLAG_LIST_SETNAME: u32 = 1 << 1;
pub const IPSET_FLAG_LIST_HEADER: u32 = 1 << 2;

// IPSET_ATTR_CADT_FLAGS bits: per element (nomatch) and at create time (the extensions).
pub const IPSET_FLAG_NOMATCH: u32 = 1 << 2;
pub const IPSET_FLAG_WITH_COUNTERS: u32 = 1 << 3;
pub const IPSET_FLAG_WITH_COMMENT: u32 = 1 << 4;
pub const IPSET_FLAG_WITH_FORCEADD: u32 = 1 << 5;
pub const IPSET_FLAG_WITH_SKBINFO: u32 = 1 << 6;

// NFPROTO_* families.
pub const NFPROTO_UNSPEC: u8 = 0;
pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_IPV6: u8 = 10;

// Error codes (positive; the kernel sends them negated).
pub const IPSET_ERR_PRIVATE: i32 = 4096;
pub const IPSET_ERR_PROTOCOL: i32 = 4097;
pub const IPSET_ERR_FIND_TYPE: i32 = 4098;
pub const IPSET_ERR_MAX_SETS: i32 = 4099;
pub const IPSET_ERR_BUSY: i32 = 4100;
pub const IPSET_ERR_EXIST_SETNAME2: i32 = 4101;
pub const IPSET_ERR_TYPE_MISMATCH: i32 = 4102;
pub const IPSET_ERR_EXIST: i32 = 4103;
pub const IPSET_ERR_INVALID_CIDR: i32 = 4104;
pub const IPSET_ERR_INVALID_NETMASK: i32 = 4105;
pub const IPSET_ERR_INVALID_FAMILY: i32 = 4106;
pub const IPSET_ERR_TIMEOUT: i32 = 4107;
pub const IPSET_ERR_REFERENCED: i32 = 4108;
pub const IPSET_ERR_IPADDR_IPV4: i32 = 4109;
pub const IPSET_ERR_IPADDR_IPV6: i32 = 4110;
pub const IPSET_ERR_COUNTER: i32 = 4111;
pub const IPSET_ERR_COMMENT: i32 = 4112;
pub const IPSET_ERR_HASH_FULL: i32 = 4352;
pub const IPSET_ERR_HASH_ELEM: i32 = 4353;
pub const IPSET_ERR_HASH_RANGE_UNSUPPORTED: i32 = 4356;
pub const IPSET_ERR_HASH_RANGE: i32 = 4357;
