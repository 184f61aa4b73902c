//! Small pieces shared by the nf_tables attribute codecs: nf_tables sends every integer big endian
//! (whatever the uapi comments say about NLA_U32), strings NUL terminated, and nests lists of
//! attributes. Parsing masks the NLA_F_NESTED / NLA_F_NET_BYTEORDER bits off the type (the kernel
//! sets NLA_F_NESTED on some nests and not on others).

use netlink_packet_core::{DecodeError, DefaultNla, Emitable, Nla, NlaBuffer, NlasIterator, Parseable, NLA_F_NESTED};

pub fn be32(v: &[u8]) -> Result<u32, DecodeError> {
    v.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok_or_else(|| DecodeError::from("u32 attribute too short"))
}
pub fn be64(v: &[u8]) -> Result<u64, DecodeError> {
    v.get(..8)
        .map(|b| u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .ok_or_else(|| DecodeError::from("u64 attribute too short"))
}
pub fn cstr(v: &[u8]) -> Result<String, DecodeError> {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8(v[..end].to_vec()).map_err(|e| DecodeError::from(e.to_string()))
}

/// Length of a string attribute's value (with its NUL).
pub fn cstr_len(s: &str) -> usize {
    s.len() + 1
}
pub fn emit_cstr(s: &str, buf: &mut [u8]) {
    buf[..s.len()].copy_from_slice(s.as_bytes());
    buf[s.len()] = 0;
}

/// Every attribute of `buf`, parsed by `one`.
pub fn parse_all<T, F>(buf: &[u8], mut one: F) -> Result<Vec<T>, DecodeError>
where
    F: FnMut(&NlaBuffer<&[u8]>) -> Result<T, DecodeError>,
{
    NlasIterator::new(buf).map(|nla| nla.and_then(|n| one(&n))).collect()
}

pub fn other(nla: &NlaBuffer<&[u8]>) -> Result<DefaultNla, DecodeError> {
    DefaultNla::parse(nla)
}

pub fn emitted_len<T: Emitable>(items: &[T]) -> usize {
    items.iter().map(|i| i.buffer_len()).sum()
}
pub fn emit_all<T: Emitable>(items: &[T], buf: &mut [u8]) {
    let mut off = 0;
    for i in items {
        let n = i.buffer_len();
        i.emit(&mut buf[off..off + n]);
        off += n;
    }
}

/// A nested attribute holding `T`s: a list of expressions, of elements, of hook attributes.
pub struct Nest<'a, T>(pub u16, pub &'a [T]);

impl<T: Emitable> Nla for Nest<'_, T> {
    fn value_len(&self) -> usize {
        emitted_len(self.1)
    }
    fn kind(&self) -> u16 {
        self.0 | NLA_F_NESTED
    }
    fn emit_value(&self, buf: &mut [u8]) {
        emit_all(self.1, buf)
    }
}

/// A big-endian u32 attribute.
pub struct U32(pub u16, pub u32);
impl Nla for U32 {
    fn value_len(&self) -> usize {
        4
    }
    fn kind(&self) -> u16 {
        self.0
    }
    fn emit_value(&self, buf: &mut [u8]) {
        buf[..4].copy_from_slice(&self.1.to_be_bytes())
    }
}

/// A NUL-terminated string attribute.
pub struct Str<'a>(pub u16, pub &'a str);
impl Nla for Str<'_> {
    fn value_len(&self) -> usize {
        cstr_len(self.1)
    }
    fn kind(&self) -> u16 {
        self.0
    }
    fn emit_value(&self, buf: &mut [u8]) {
        emit_cstr(self.1, buf)
    }
}

/// Raw bytes.
pub struct Bytes<'a>(pub u16, pub &'a [u8]);
impl Nla for Bytes<'_> {
    fn value_len(&self) -> usize {
        self.1.len()
    }
    fn kind(&self) -> u16 {
        self.0
    }
    fn emit_value(&self, buf: &mut [u8]) {
        buf[..self.1.len()].copy_from_slice(self.1)
    }
}

/// Emits a heterogeneous list of attributes into `buf` (each already an Nla).
pub fn emit_dyn(items: &[&dyn Emit], buf: &mut [u8]) {
    let mut off = 0;
    for i in items {
        let n = i.emitted_len();
        i.put(&mut buf[off..off + n]);
        off += n;
    }
}
pub fn dyn_len(items: &[&dyn Emit]) -> usize {
    items.iter().map(|i| i.emitted_len()).sum()
}

/// Object-safe emitting, so one attribute list can mix kinds.
pub trait Emit {
    fn emitted_len(&self) -> usize;
    fn put(&self, buf: &mut [u8]);
}
impl<T: Nla> Emit for T {
    fn emitted_len(&self) -> usize {
        self.buffer_len()
    }
    fn put(&self, buf: &mut [u8]) {
        self.emit(buf)
    }
}

/// The value of an attribute, borrowed from the buffer it was parsed from (not from the view).
pub fn value_of(nla: NlaBuffer<&[u8]>) -> &[u8] {
    let len = (nla.length() as usize).max(4);
    let b = nla.into_inner();
    &b[4..len.min(b.len())]
}
