//! Typed ipset netlink attributes that emit and parse, with an `Other` fallback for the unknown.
//!
//! The kernel reuses attribute numbers inside IPSET_ATTR_DATA: in a set header (create, list) 26
//! is MEMSIZE, in an element it is COMMENT. So DATA is parsed as `HeaderAttr` or `Elem`
//! according to where it sits, never guessed from the number alone.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{DecodeError, DefaultNla, Emitable, Nla, NlaBuffer, NlasIterator, Parseable, NLA_F_NESTED, NLA_F_NET_BYTEORDER};

use super::constants::*;

fn be32(v: &[u8]) -> Result<u32, DecodeError> {
    v.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok_or_else(|| DecodeError::from("u32 attribute too short"))
}
fn ne32(v: &[u8]) -> Result<u32, DecodeError> {
    v.get(..4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]])).ok_or_else(|| DecodeError::from("u32 attribute too short"))
}
fn u8v(v: &[u8]) -> Result<u8, DecodeError> {
    v.first().copied().ok_or_else(|| DecodeError::from("u8 attribute empty"))
}
fn cstr(v: &[u8]) -> Result<String, DecodeError> {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8(v[..end].to_vec()).map_err(|e| DecodeError::from(e.to_string()))
}
fn emit_cstr(s: &str, buf: &mut [u8]) {
    buf[..s.len()].copy_from_slice(s.as_bytes());
    buf[s.len()] = 0;
}

fn parse_all<T, F>(buf: &[u8], mut one: F) -> Result<Vec<T>, DecodeError>
where
    F: FnMut(&NlaBuffer<&[u8]>) -> Result<T, DecodeError>,
{
    NlasIterator::new(buf).map(|nla| nla.and_then(|n| one(&n))).collect()
}

fn emitted_len<T: Emitable>(items: &[T]) -> usize {
    items.iter().map(|i| i.buffer_len()).sum()
}
fn emit_all<T: Emitable>(items: &[T], buf: &mut [u8]) {
    let mut off = 0;
    for i in items {
        let n = i.buffer_len();
        i.emit(&mut buf[off..off + n]);
        off += n;
    }
}

/// An address inside IPSET_ATTR_IP: a nested attribute holding IPADDR_IPV4 or IPADDR_IPV6,
/// in network byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IpAddrNla(IpAddr);

impl Nla for IpAddrNla {
    fn value_len(&self) -> usize {
        match self.0 {
            IpAddr::V4(_) => 4,
            IpAddr::V6(_) => 16,
        }
    }
    fn kind(&self) -> u16 {
        match self.0 {
            IpAddr::V4(_) => IPSET_ATTR_IPADDR_IPV4 | NLA_F_NET_BYTEORDER,
            IpAddr::V6(_) => IPSET_ATTR_IPADDR_IPV6 | NLA_F_NET_BYTEORDER,
        }
    }
    fn emit_value(&self, buf: &mut [u8]) {
        match self.0 {
            IpAddr::V4(a) => buf[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => buf[..16].copy_from_slice(&a.octets()),
        }
    }
}

fn parse_ip(nested: &[u8]) -> Result<IpAddr, DecodeError> {
    for nla in NlasIterator::new(nested) {
        let nla = nla?;
        let v = nla.value();
        match nla.kind() {
            IPSET_ATTR_IPADDR_IPV4 if v.len() >= 4 => return Ok(IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3]))),
            IPSET_ATTR_IPADDR_IPV6 if v.len() >= 16 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&v[..16]);
                return Ok(IpAddr::V6(Ipv6Addr::from(o)));
            }
            _ => {}
        }
    }
    Err(DecodeError::from("IPSET_ATTR_IP without an address"))
}

/// Attributes of a set header: what create sends and what list/header answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderAttr {
    HashSize(u32),
    MaxElem(u32),
    Timeout(u32),
    CadtFlags(u32),
    Netmask(u8),
    /// A set created with `bitmask`: elements are stored ANDed with it.
    Bitmask(IpAddr),
    BucketSize(u8),
    InitVal(u32),
    Elements(u32),
    References(u32),
    MemSize(u32),
    Other(DefaultNla),
}

impl Nla for HeaderAttr {
    fn value_len(&self) -> usize {
        match self {
            HeaderAttr::Netmask(_) | HeaderAttr::BucketSize(_) => 1,
            HeaderAttr::Bitmask(a) => IpAddrNla(*a).buffer_len(),
            HeaderAttr::Other(o) => o.value_len(),
            _ => 4,
        }
    }
    fn kind(&self) -> u16 {
        use HeaderAttr::*;
        match self {
            HashSize(_) => IPSET_ATTR_HASHSIZE | NLA_F_NET_BYTEORDER,
            MaxElem(_) => IPSET_ATTR_MAXELEM | NLA_F_NET_BYTEORDER,
            Timeout(_) => IPSET_ATTR_TIMEOUT | NLA_F_NET_BYTEORDER,
            CadtFlags(_) => IPSET_ATTR_CADT_FLAGS | NLA_F_NET_BYTEORDER,
            Netmask(_) => IPSET_ATTR_NETMASK,
            Bitmask(_) => IPSET_ATTR_BITMASK | NLA_F_NESTED,
            BucketSize(_) => IPSET_ATTR_BUCKETSIZE,
            InitVal(_) => IPSET_ATTR_INITVAL | NLA_F_NET_BYTEORDER,
            Elements(_) => IPSET_ATTR_ELEMENTS | NLA_F_NET_BYTEORDER,
            References(_) => IPSET_ATTR_REFERENCES | NLA_F_NET_BYTEORDER,
            MemSize(_) => IPSET_ATTR_MEMSIZE | NLA_F_NET_BYTEORDER,
            Other(o) => o.kind(),
        }
    }
    fn emit_value(&self, buf: &mut [u8]) {
        use HeaderAttr::*;
        match self {
            HashSize(v) | MaxElem(v) | Timeout(v) | CadtFlags(v) | InitVal(v) | Elements(v) | References(v) | MemSize(v) => {
                buf[..4].copy_from_slice(&v.to_be_bytes())
            }
            Netmask(v) | BucketSize(v) => buf[0] = *v,
            Bitmask(a) => IpAddrNla(*a).emit(buf),
            Other(o) => o.emit_value(buf),
        }
    }
}

impl HeaderAttr {
    pub fn parse(nla: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        use HeaderAttr::*;
        let v = nla.value();
        Ok(match nla.kind() {
            IPSET_ATTR_HASHSIZE => HashSize(be32(v)?),
            IPSET_ATTR_MAXELEM => MaxElem(be32(v)?),
            IPSET_ATTR_TIMEOUT => Timeout(be32(v)?),
            IPSET_ATTR_CADT_FLAGS => CadtFlags(be32(v)?),
            IPSET_ATTR_NETMASK => Netmask(u8v(v)?),
            IPSET_ATTR_BITMASK => Bitmask(parse_ip(v)?),
            IPSET_ATTR_BUCKETSIZE => BucketSize(u8v(v)?),
            IPSET_ATTR_INITVAL => InitVal(be32(v)?),
            IPSET_ATTR_ELEMENTS => Elements(be32(v)?),
            IPSET_ATTR_REFERENCES => References(be32(v)?),
            IPSET_ATTR_MEMSIZE => MemSize(be32(v)?),
            _ => Other(DefaultNla::parse(nla)?),
        })
    }
}

/// One element (add, del, test, and the entries of a list dump): the attributes inside one
/// IPSET_ATTR_DATA. A struct rather than a list of attributes, because batches and dumps carry
/// tens of thousands of them and each would otherwise be an allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Elem {
    pub ip: Option<IpAddr>,
    pub cidr: Option<u8>,
    pub timeout: Option<u32>,
    pub cadt_flags: Option<u32>,
    /// Our index of the element within its message, echoed back by the kernel on failure.
    pub lineno: Option<u32>,
    pub comment: Option<String>,
    /// Everything else (ports, a second address, an interface, counters…), kept as it came.
    pub other: Vec<DefaultNla>,
}

impl Elem {
    fn attrs_len(&self) -> usize {
        let mut n = 0;
        if let Some(a) = self.ip {
            n += NLA_HEADER + IpAddrNla(a).buffer_len();
        }
        if self.cidr.is_some() {
            n += NLA_HEADER + 4;
        }
        n += [self.timeout, self.cadt_flags, self.lineno].iter().filter(|v| v.is_some()).count() * (NLA_HEADER + 4);
        if let Some(c) = &self.comment {
            n += NLA_HEADER + align(c.len() + 1);
        }
        n + self.other.as_slice().buffer_len()
    }

    fn emit_attrs(&self, buf: &mut [u8]) {
        let mut off = 0;
        let mut put = |nla: &dyn NlaEmit, buf: &mut [u8]| {
            let n = nla.len();
            nla.put(&mut buf[off..off + n]);
            off += n;
        };
        if let Some(a) = self.ip {
            put(&Nested(IPSET_ATTR_IP | NLA_F_NESTED, IpAddrNla(a)), buf);
        }
        if let Some(c) = self.cidr {
            put(&U8(IPSET_ATTR_CIDR, c), buf);
        }
        if let Some(t) = self.timeout {
            put(&Be32(IPSET_ATTR_TIMEOUT | NLA_F_NET_BYTEORDER, t), buf);
        }
        if let Some(f) = self.cadt_flags {
            put(&Be32(IPSET_ATTR_CADT_FLAGS | NLA_F_NET_BYTEORDER, f), buf);
        }
        if let Some(l) = self.lineno {
            put(&Ne32(IPSET_ATTR_CADT_LINENO, l), buf);
        }
        if let Some(c) = &self.comment {
            put(&CStr(IPSET_ATTR_COMMENT, c), buf);
        }
        self.other.as_slice().emit(&mut buf[off..]);
    }

    pub fn parse(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut e = Elem::default();
        for nla in NlasIterator::new(buf) {
            let nla = nla?;
            let v = nla.value();
            match nla.kind() {
                IPSET_ATTR_IP => e.ip = Some(parse_ip(v)?),
                IPSET_ATTR_CIDR => e.cidr = Some(u8v(v)?),
                IPSET_ATTR_TIMEOUT => e.timeout = Some(be32(v)?),
                IPSET_ATTR_CADT_FLAGS => e.cadt_flags = Some(be32(v)?),
                IPSET_ATTR_CADT_LINENO => e.lineno = Some(ne32(v)?),
                IPSET_ATTR_COMMENT => e.comment = Some(cstr(v)?),
                _ => e.other.push(DefaultNla::parse(&nla)?),
            }
        }
        Ok(e)
    }
}

const NLA_HEADER: usize = 4;
fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// The few attribute shapes an element is made of, emitted without building `Nla` values.
trait NlaEmit {
    /// Whole attribute length, header and padding included.
    fn len(&self) -> usize;
    fn put(&self, buf: &mut [u8]);
}
fn header(buf: &mut [u8], kind: u16, value_len: usize) {
    buf[..2].copy_from_slice(&((value_len + NLA_HEADER) as u16).to_ne_bytes());
    buf[2..4].copy_from_slice(&kind.to_ne_bytes());
}
struct U8(u16, u8);
impl NlaEmit for U8 {
    fn len(&self) -> usize {
        NLA_HEADER + 4
    }
    fn put(&self, buf: &mut [u8]) {
        header(buf, self.0, 1);
        buf[4..8].copy_from_slice(&[self.1, 0, 0, 0]);
    }
}
struct Be32(u16, u32);
impl NlaEmit for Be32 {
    fn len(&self) -> usize {
        NLA_HEADER + 4
    }
    fn put(&self, buf: &mut [u8]) {
        header(buf, self.0, 4);
        buf[4..8].copy_from_slice(&self.1.to_be_bytes());
    }
}
struct Ne32(u16, u32);
impl NlaEmit for Ne32 {
    fn len(&self) -> usize {
        NLA_HEADER + 4
    }
    fn put(&self, buf: &mut [u8]) {
        header(buf, self.0, 4);
        buf[4..8].copy_from_slice(&self.1.to_ne_bytes());
    }
}
struct CStr<'a>(u16, &'a str);
impl NlaEmit for CStr<'_> {
    fn len(&self) -> usize {
        NLA_HEADER + align(self.1.len() + 1)
    }
    fn put(&self, buf: &mut [u8]) {
        header(buf, self.0, self.1.len() + 1);
        let end = self.len();
        buf[4..end].fill(0);
        buf[4..4 + self.1.len()].copy_from_slice(self.1.as_bytes());
    }
}
struct Nested(u16, IpAddrNla);
impl NlaEmit for Nested {
    fn len(&self) -> usize {
        NLA_HEADER + self.1.buffer_len()
    }
    fn put(&self, buf: &mut [u8]) {
        header(buf, self.0, self.1.buffer_len());
        self.1.emit(&mut buf[NLA_HEADER..self.len()]);
    }
}

/// Nested IPSET_ATTR_DATA around an element, as it sits inside IPSET_ATTR_ADT or a command.
struct ElemDataNla<'a>(&'a Elem);
impl Nla for ElemDataNla<'_> {
    fn value_len(&self) -> usize {
        self.0.attrs_len()
    }
    fn kind(&self) -> u16 {
        IPSET_ATTR_DATA | NLA_F_NESTED
    }
    fn emit_value(&self, buf: &mut [u8]) {
        self.0.emit_attrs(buf)
    }
}

/// Where an IPSET_ATTR_DATA sits decides how it is read (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataContext {
    Header,
    Element,
}

/// Command-level attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpsetAttr {
    Protocol(u8),
    SetName(String),
    /// Type name on create/type/list; the second set name on rename and swap.
    TypeName(String),
    Revision(u8),
    Family(u8),
    Flags(u32),
    HeaderData(Vec<HeaderAttr>),
    ElemData(Elem),
    /// Many elements in one message.
    Adt(Vec<Elem>),
    LineNo(u32),
    ProtocolMin(u8),
    Index(u16),
    Other(DefaultNla),
}

impl Nla for IpsetAttr {
    fn value_len(&self) -> usize {
        use IpsetAttr::*;
        match self {
            Protocol(_) | Revision(_) | Family(_) | ProtocolMin(_) => 1,
            SetName(s) | TypeName(s) => s.len() + 1,
            Flags(_) | LineNo(_) => 4,
            Index(_) => 2,
            HeaderData(a) => emitted_len(a),
            ElemData(e) => e.attrs_len(),
            Adt(elems) => elems.iter().map(|e| ElemDataNla(e).buffer_len()).sum(),
            Other(o) => o.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        use IpsetAttr::*;
        match self {
            Protocol(_) => IPSET_ATTR_PROTOCOL,
            SetName(_) => IPSET_ATTR_SETNAME,
            TypeName(_) => IPSET_ATTR_TYPENAME,
            Revision(_) => IPSET_ATTR_REVISION,
            Family(_) => IPSET_ATTR_FAMILY,
            Flags(_) => IPSET_ATTR_FLAGS | NLA_F_NET_BYTEORDER,
            HeaderData(_) | ElemData(_) => IPSET_ATTR_DATA | NLA_F_NESTED,
            Adt(_) => IPSET_ATTR_ADT | NLA_F_NESTED,
            LineNo(_) => IPSET_ATTR_LINENO,
            ProtocolMin(_) => IPSET_ATTR_PROTOCOL_MIN,
            Index(_) => IPSET_ATTR_INDEX,
            Other(o) => o.kind(),
        }
    }
    fn emit_value(&self, buf: &mut [u8]) {
        use IpsetAttr::*;
        match self {
            Protocol(v) | Revision(v) | Family(v) | ProtocolMin(v) => buf[0] = *v,
            SetName(s) | TypeName(s) => emit_cstr(s, buf),
            Flags(v) => buf[..4].copy_from_slice(&v.to_be_bytes()),
            LineNo(v) => buf[..4].copy_from_slice(&v.to_ne_bytes()),
            Index(v) => buf[..2].copy_from_slice(&v.to_be_bytes()),
            HeaderData(a) => emit_all(a, buf),
            ElemData(e) => e.emit_attrs(buf),
            Adt(elems) => {
                let mut off = 0;
                for e in elems {
                    let d = ElemDataNla(e);
                    let n = d.buffer_len();
                    d.emit(&mut buf[off..off + n]);
                    off += n;
                }
            }
            Other(o) => o.emit_value(buf),
        }
    }
}

impl IpsetAttr {
    pub fn parse(nla: &NlaBuffer<&[u8]>, data: DataContext) -> Result<Self, DecodeError> {
        use IpsetAttr::*;
        let v = nla.value();
        Ok(match nla.kind() {
            IPSET_ATTR_PROTOCOL => Protocol(u8v(v)?),
            IPSET_ATTR_SETNAME => SetName(cstr(v)?),
            IPSET_ATTR_TYPENAME => TypeName(cstr(v)?),
            IPSET_ATTR_REVISION => Revision(u8v(v)?),
            IPSET_ATTR_FAMILY => Family(u8v(v)?),
            IPSET_ATTR_FLAGS => Flags(be32(v)?),
            IPSET_ATTR_DATA => match data {
                DataContext::Header => HeaderData(parse_all(v, HeaderAttr::parse)?),
                DataContext::Element => ElemData(Elem::parse(v)?),
            },
            IPSET_ATTR_ADT => Adt(parse_all(v, |d| {
                if d.kind() != IPSET_ATTR_DATA {
                    return Err(DecodeError::from("IPSET_ATTR_ADT holds a non-DATA attribute"));
                }
                Elem::parse(d.value())
            })?),
            IPSET_ATTR_LINENO => LineNo(ne32(v)?),
            IPSET_ATTR_PROTOCOL_MIN => ProtocolMin(u8v(v)?),
            IPSET_ATTR_INDEX if v.len() >= 2 => Index(u16::from_be_bytes([v[0], v[1]])),
            _ => Other(DefaultNla::parse(nla)?),
        })
    }

    pub fn parse_all(buf: &[u8], data: DataContext) -> Result<Vec<Self>, DecodeError> {
        parse_all(buf, |n| IpsetAttr::parse(n, data))
    }
}

/// Encoded size of one element inside IPSET_ATTR_ADT (used to fill messages up to the 16-bit limit).
pub fn elem_wire_len(elem: &Elem) -> usize {
    ElemDataNla(elem).buffer_len()
}
