//! Numbers of the kernel's nfnetlink_log protocol, as include/uapi/linux/netfilter/nfnetlink_log.h
//! and nfnetlink.h define them. Only what this crate speaks is named here.

/// The subsystem id (nfnetlink.h).
pub const NFNL_SUBSYS_ULOG: u8 = 4;

// ---- message types (enum nfulnl_msg_types) ----
pub const NFULNL_MSG_PACKET: u8 = 0;
pub const NFULNL_MSG_CONFIG: u8 = 1;

// ---- a packet's attributes (enum nfulnl_attr_type) ----
pub const NFULA_PACKET_HDR: u16 = 1;
pub const NFULA_MARK: u16 = 2;
pub const NFULA_TIMESTAMP: u16 = 3;
pub const NFULA_IFINDEX_INDEV: u16 = 4;
pub const NFULA_IFINDEX_OUTDEV: u16 = 5;
pub const NFULA_IFINDEX_PHYSINDEV: u16 = 6;
pub const NFULA_IFINDEX_PHYSOUTDEV: u16 = 7;
pub const NFULA_HWADDR: u16 = 8;
pub const NFULA_PAYLOAD: u16 = 9;
pub const NFULA_PREFIX: u16 = 10;
pub const NFULA_HWTYPE: u16 = 15;
pub const NFULA_HWHEADER: u16 = 16;
pub const NFULA_HWLEN: u16 = 17;

// ---- configuration (enum nfulnl_attr_config, nfulnl_msg_config_cmds) ----
pub const NFULA_CFG_CMD: u16 = 1;
pub const NFULA_CFG_MODE: u16 = 2;
pub const NFULA_CFG_NLBUFSIZ: u16 = 3;
pub const NFULA_CFG_TIMEOUT: u16 = 4;
pub const NFULA_CFG_QTHRESH: u16 = 5;
pub const NFULA_CFG_FLAGS: u16 = 6;
pub const NFULNL_CFG_CMD_BIND: u8 = 1;
pub const NFULNL_CFG_CMD_UNBIND: u8 = 2;

/// Copy modes (NFULNL_COPY_*): the packet's metadata only, or its bytes too (up to a range).
pub const NFULNL_COPY_META: u8 = 0x01;
pub const NFULNL_COPY_PACKET: u8 = 0x02;

/// The fixed-layout structs: nfulnl_msg_packet_hdr, nfulnl_msg_packet_hw,
/// nfulnl_msg_packet_timestamp, nfulnl_msg_config_mode.
pub const PACKET_HDR_LEN: usize = 4;
pub const PACKET_HW_LEN: usize = 12;
pub const TIMESTAMP_LEN: usize = 16;
pub const CONFIG_MODE_LEN: usize = 6;

/// Ethernet, as NFULA_HWTYPE says it (ARPHRD_ETHER).
pub const ARPHRD_ETHER: u16 = 1;
