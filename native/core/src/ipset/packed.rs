//! The member list as it crosses from JS: one byte buffer packed once on the JS side
//! (`src/addon/ipset.ts`, `MemberList`), so that no per-member string crosses the boundary.
//!
//! Records, back to back:
//! - `0x04 a b c d`: an IPv4 address whose text was exactly the dotted quad `a.b.c.d`;
//! - `0x05 p a b c d`: an IPv4 network whose text was exactly `a.b.c.d/p` (`p` is not checked
//!   here: a prefix over 32 is refused below, as in text);
//! - `0x00 n text[n]`: any other text, parsed here by `Member::parse`, the one home of what a valid
//!   member is. The JS side packs only the canonical IPv4 spellings as binary (decimal octets and
//!   prefix without leading zeros), so both paths accept and refuse the same texts; anything unusual
//!   travels as text and gets the same answer.

use std::net::{IpAddr, Ipv4Addr};

use super::error::{ErrorCode, IpsetError};
use super::member::{Member, SetSpec};

pub const REC_TEXT: u8 = 0x00;
pub const REC_V4_HOST: u8 = 0x04;
pub const REC_V4_NET: u8 = 0x05;

/// A record that is not a member: where it is, its text as the caller wrote it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    pub index: usize,
    pub text: String,
    pub reason: String,
}

/// Walks the records of a packed list.
pub struct Records<'a> {
    buf: &'a [u8],
    at: usize,
    index: usize,
}

pub fn records(buf: &[u8]) -> Records<'_> {
    Records { buf, at: 0, index: 0 }
}

impl Records<'_> {
    /// Bytes consumed so far.
    pub fn consumed(&self) -> usize {
        self.at
    }
}

fn v4_text(o: &[u8], prefix: Option<u8>) -> String {
    let a = Ipv4Addr::new(o[0], o[1], o[2], o[3]);
    match prefix {
        Some(p) => format!("{a}/{p}"),
        None => a.to_string(),
    }
}

impl Iterator for Records<'_> {
    type Item = Result<Member, BadRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.buf;
        let at = self.at;
        if at >= b.len() {
            return None;
        }
        let index = self.index;
        self.index += 1;
        let truncated = |at: usize| BadRecord { index, text: String::new(), reason: format!("member list truncated at byte {at}") };
        let (item, len) = match b[at] {
            REC_V4_HOST => match b.get(at + 1..at + 5) {
                Some(o) => (Ok(Member { addr: IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3])), prefix: 32 }), 5),
                None => (Err(truncated(at)), b.len() - at),
            },
            REC_V4_NET => match b.get(at + 1..at + 6) {
                Some(r) => {
                    let (p, o) = (r[0], &r[1..]);
                    let item = if p > 32 {
                        Err(BadRecord { index, text: v4_text(o, Some(p)), reason: format!("prefix length {p} exceeds 32") })
                    } else {
                        Ok(Member::new(IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3])), p))
                    };
                    (item, 6)
                }
                None => (Err(truncated(at)), b.len() - at),
            },
            REC_TEXT => {
                let n = b.get(at + 1).copied().unwrap_or(0) as usize;
                match b.get(at + 2..at + 2 + n) {
                    Some(t) => {
                        let text = String::from_utf8_lossy(t);
                        let item = Member::parse(&text).map_err(|reason| BadRecord { index, text: text.into_owned(), reason });
                        (item, 2 + n)
                    }
                    None => (Err(truncated(at)), b.len() - at),
                }
            }
            other => (Err(BadRecord { index, text: String::new(), reason: format!("unknown member record {other:#x}") }), b.len() - at),
        };
        self.at = at + len;
        Some(item)
    }
}

/// Decodes a packed member list, refusing the first member that is not one, or (with a spec) that
/// the set cannot take. Errors name the member as the caller wrote it.
pub fn decode_members(name: &str, spec: Option<&SetSpec>, packed: &[u8]) -> Result<Vec<Member>, IpsetError> {
    let mut out = Vec::with_capacity(packed.len() / 5);
    let refuse = |index: usize, m: &Member, reason: String| {
        let text = record_text(packed, index).unwrap_or_else(|| m.to_string());
        IpsetError::new(ErrorCode::InvalidMember, reason).set(name).member(text)
    };
    let mut at = 0;
    while at < packed.len() {
        // The common record (an IPv4 address) is decoded inline; the others go through `records`.
        let (m, len) = match packed.get(at..at + 5) {
            Some(&[REC_V4_HOST, a, b, c, d]) => (Member { addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)), prefix: 32 }, 5),
            _ => {
                let mut one = records(&packed[at..]);
                match one.next() {
                    Some(Ok(m)) => (m, one.consumed()),
                    Some(Err(b)) => return Err(IpsetError::new(ErrorCode::InvalidMember, b.reason).set(name).member(b.text)),
                    None => break,
                }
            }
        };
        if let Some(spec) = spec {
            if let Err(reason) = m.check_fits(spec) {
                return Err(refuse(out.len(), &m, reason));
            }
        }
        out.push(m);
        at += len;
    }
    Ok(out)
}

/// The text a record was written from (exact for the binary IPv4 forms, which only canonical text
/// takes), for errors that name the caller's member.
pub fn record_text(buf: &[u8], index: usize) -> Option<String> {
    let mut at = 0;
    for _ in 0..index {
        at += match *buf.get(at)? {
            REC_V4_HOST => 5,
            REC_V4_NET => 6,
            REC_TEXT => 2 + *buf.get(at + 1)? as usize,
            _ => return None,
        };
    }
    match *buf.get(at)? {
        REC_V4_HOST => Some(v4_text(buf.get(at + 1..at + 5)?, None)),
        REC_V4_NET => Some(v4_text(buf.get(at + 2..at + 6)?, Some(*buf.get(at + 1)?))),
        REC_TEXT => {
            let n = *buf.get(at + 1)? as usize;
            Some(String::from_utf8_lossy(buf.get(at + 2..at + 2 + n)?).into_owned())
        }
        _ => None,
    }
}

/// Packs texts the way the JS side does, all as text records (for tests and Rust callers).
pub fn pack_texts<S: AsRef<str>>(texts: &[S]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in texts {
        let t = t.as_ref().as_bytes();
        let t = &t[..t.len().min(255)];
        out.push(REC_TEXT);
        out.push(t.len() as u8);
        out.extend_from_slice(t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(buf: &[u8]) -> Vec<Result<String, (usize, String)>> {
        records(buf).map(|r| r.map(|m| m.to_string()).map_err(|e| (e.index, e.text))).collect()
    }

    #[test]
    fn binary_and_text_records_decode_to_the_same_members() {
        let mut buf = vec![REC_V4_HOST, 10, 0, 0, 1, REC_V4_NET, 24, 10, 1, 2, 3];
        buf.extend(pack_texts(&["fd00::1/64", "10.0.0.9/32"]));
        assert_eq!(decode(&buf), vec![Ok("10.0.0.1".into()), Ok("10.1.2.0/24".into()), Ok("fd00::/64".into()), Ok("10.0.0.9".into())]);
        assert_eq!(record_text(&buf, 1).as_deref(), Some("10.1.2.3/24"));
        assert_eq!(record_text(&buf, 2).as_deref(), Some("fd00::1/64"));
        assert_eq!(record_text(&buf, 4), None);
    }

    #[test]
    fn bad_records_name_the_callers_text_and_position() {
        let mut buf = pack_texts(&["10.0.0.1", "10.0.0.1/032"]);
        buf.extend([REC_V4_NET, 33, 10, 0, 0, 0]);
        let out = decode(&buf);
        assert_eq!(out[1], Err((1, "10.0.0.1/032".into())));
        assert_eq!(out[2], Err((2, "10.0.0.0/33".into())));
        assert!(decode(&[REC_V4_HOST, 10, 0])[0].is_err(), "truncated");
        assert!(decode(&[REC_TEXT, 9, b'1'])[0].is_err(), "truncated text");
        assert!(decode(&[0x7f])[0].is_err(), "unknown record");
    }
}
