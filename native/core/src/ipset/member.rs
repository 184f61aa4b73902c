//! Set members and set specs: parsing, validation (everything the kernel would refuse is refused
//! here, before anything is sent) and printing as `ipset save` prints.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::attr::Elem;
use super::constants::{NFPROTO_IPV4, NFPROTO_IPV6};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Inet,
    Inet6,
}

impl Family {
    pub fn nfproto(self) -> u8 {
        match self {
            Family::Inet => NFPROTO_IPV4,
            Family::Inet6 => NFPROTO_IPV6,
        }
    }
    pub fn from_nfproto(v: u8) -> Option<Self> {
        match v {
            NFPROTO_IPV4 => Some(Family::Inet),
            NFPROTO_IPV6 => Some(Family::Inet6),
            _ => None,
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "inet" => Some(Family::Inet),
            "inet6" => Some(Family::Inet6),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Inet6 => "inet6",
        }
    }
    fn max_prefix(self) -> u8 {
        match self {
            Family::Inet => 32,
            Family::Inet6 => 128,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetType {
    HashIp,
    HashNet,
}

impl SetType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hash:ip" => Some(SetType::HashIp),
            "hash:net" => Some(SetType::HashNet),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            SetType::HashIp => "hash:ip",
            SetType::HashNet => "hash:net",
        }
    }
}

/// What a set is: the options that, when they differ, require a new set (filled and swapped in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSpec {
    pub set_type: SetType,
    pub family: Family,
    pub hashsize: Option<u32>,
    pub maxelem: Option<u32>,
    pub timeout: Option<u32>,
    pub comment: bool,
}

/// The kernel's default maxelem, which a set gets when the spec names none.
pub const DEFAULT_MAXELEM: u32 = 65536;

impl SetSpec {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(h) = self.hashsize {
            if !(64..=(1 << 30)).contains(&h) {
                return Err(format!("hashsize {h} out of range 64..2^30"));
            }
        }
        if let Some(m) = self.maxelem {
            if m == 0 {
                return Err("maxelem must be positive".into());
            }
        }
        if let Some(t) = self.timeout {
            if t > 2_147_483 {
                return Err(format!("timeout {t} too large"));
            }
        }
        Ok(())
    }
    pub fn effective_maxelem(&self) -> u32 {
        self.maxelem.unwrap_or(DEFAULT_MAXELEM)
    }
    /// Whether a set created with `self` can hold what `wanted` asks for without being replaced.
    /// The hash size is not compared: the kernel grows the table by itself.
    pub fn satisfies(&self, wanted: &SetSpec) -> bool {
        self.set_type == wanted.set_type
            && self.family == wanted.family
            && self.effective_maxelem() == wanted.effective_maxelem()
            && self.timeout.is_some() == wanted.timeout.is_some()
            && self.timeout.unwrap_or(0) == wanted.timeout.unwrap_or(0)
            && self.comment == wanted.comment
    }
}

/// An address or network. Host bits of a network are cleared, as the kernel stores it, so that
/// what we hold and what we read back compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// Hashes the address as whole words (a derived `Hash` feeds `IpAddr`'s octets through the byte
/// path); consistent with `Eq`, which compares the same fields.
impl Hash for Member {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self.addr {
            IpAddr::V4(a) => state.write_u64(((u32::from(a) as u64) << 8) | self.prefix as u64),
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                state.write_u64((bits >> 64) as u64);
                state.write_u64(bits as u64 ^ ((self.prefix as u64) << 56) ^ 1);
            }
        }
    }
}

pub const MAX_MEMBER_TEXT: usize = 64;

impl Member {
    /// A member from an address and a prefix no longer than the family's; host bits are cleared.
    pub fn new(addr: IpAddr, prefix: u8) -> Member {
        Member { addr: mask(addr, prefix), prefix }
    }

    pub fn parse(text: &str) -> Result<Member, String> {
        if text.is_empty() || text.len() > MAX_MEMBER_TEXT {
            return Err("not an IP address or CIDR".into());
        }
        let (ip_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = ip_text.parse().map_err(|_| "not an IP address or CIDR".to_string())?;
        let max = Member::family_of(addr).max_prefix();
        let prefix = match prefix_text {
            None => max,
            Some(p) => {
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err("invalid prefix length".into());
                }
                // The ipset tool reads a leading zero as octal (`/032` is /26): refused rather than
                // read one way here and another way there.
                if p.len() > 1 && p.starts_with('0') {
                    return Err("prefix length with a leading zero".into());
                }
                let n: u8 = p.parse().map_err(|_| "invalid prefix length".to_string())?;
                if n > max {
                    return Err(format!("prefix length {n} exceeds {max}"));
                }
                n
            }
        };
        Ok(Member { addr: mask(addr, prefix), prefix })
    }

    fn family_of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Inet,
            IpAddr::V6(_) => Family::Inet6,
        }
    }
    pub fn family(&self) -> Family {
        Member::family_of(self.addr)
    }
    pub fn is_host(&self) -> bool {
        self.prefix == self.family().max_prefix()
    }

    /// Checks that this member fits a set of `spec`, including everything the kernel itself would
    /// refuse for the type (net/netfilter/ipset/ip_set_hash_ip.c, ip_set_hash_net.c: hash:ip stores
    /// no all-zero address, `0.0.0.0` or `::`; hash:net no prefix 0). The reason is for the caller's
    /// error.
    pub fn check_fits(&self, spec: &SetSpec) -> Result<(), String> {
        if self.family() != spec.family {
            return Err(format!("{} address in a {} set", self.family().as_str(), spec.family.as_str()));
        }
        match spec.set_type {
            SetType::HashIp if !self.is_host() => Err("hash:ip sets hold single addresses, not networks".into()),
            SetType::HashIp if self.addr.is_unspecified() => {
                Err("the all-zero address cannot be stored in a hash:ip set (the kernel refuses it)".into())
            }
            // An "everything" entry must be modelled above us (or as two halves).
            SetType::HashNet if self.prefix == 0 => Err("prefix length 0 is not allowed in hash:net (the kernel refuses it)".into()),
            _ => Ok(()),
        }
    }

    /// The element the kernel is sent; `lineno` ties a failure report back to this element.
    pub fn to_elem(&self, set_type: SetType, lineno: Option<u32>) -> Elem {
        Elem { ip: Some(self.addr), cidr: (set_type == SetType::HashNet).then_some(self.prefix), lineno, ..Elem::default() }
    }

    /// Reads an element of a list dump back into a member (the caller checks that the element holds
    /// nothing a member cannot express: `ElemReading`).
    pub fn from_elem(elem: &Elem) -> Option<Member> {
        let addr = elem.ip?;
        let max = Member::family_of(addr).max_prefix();
        let prefix = elem.cidr.unwrap_or(max).min(max);
        Some(Member { addr: mask(addr, prefix), prefix })
    }
}

impl fmt::Display for Member {
    /// As `ipset save` prints it: host addresses without a prefix, IPv6 as glibc's `inet_ntop`
    /// writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}")?,
            IpAddr::V6(a) => write_ipv6(f, a)?,
        }
        if !self.is_host() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

/// IPv6 text as glibc's `inet_ntop` (which the `ipset` tool uses) writes it. It agrees with Rust's
/// `Display` (longest run of two or more zero groups compressed, the first of equal runs, lower
/// case, `::ffff:a.b.c.d` for mapped addresses) except for one form: when the longest zero run is
/// exactly the first six groups, glibc writes the last 32 bits as a dotted quad (`::1.2.3.4`, the
/// old IPv4-compatible form) where Rust writes `::102:304`.
fn write_ipv6(f: &mut fmt::Formatter<'_>, a: Ipv6Addr) -> fmt::Result {
    let s = a.segments();
    if s[..6].iter().all(|&g| g == 0) && s[6] != 0 {
        let o = a.octets();
        return write!(f, "::{}", Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    write!(f, "{a}")
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix as u32) };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix as u32) };
            IpAddr::V6((bits & m).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        assert_eq!(Member::parse("10.0.0.1").unwrap().to_string(), "10.0.0.1");
        assert_eq!(Member::parse("10.0.0.1/24").unwrap().to_string(), "10.0.0.0/24");
        assert_eq!(Member::parse("10.0.0.7/32").unwrap().to_string(), "10.0.0.7");
        assert_eq!(Member::parse("FD00::1/64").unwrap().to_string(), "fd00::/64");
        assert_eq!(Member::parse("fd00::1").unwrap().to_string(), "fd00::1");
    }

    #[test]
    fn refuses_bad_text() {
        for bad in [
            "",
            "10.0.0",
            "10.0.0.256",
            "010.0.0.1",
            "10.0.0.1/33",
            "10.0.0.1/",
            "10.0.0.1/+1",
            "fd00::1/129",
            "fe80::1%eth0",
            "10.0.0.1 ",
            "a;b",
            "10.0.0.1/24/1",
            "::g",
            // The ipset tool reads these prefixes as octal: 032 is 26.
            "10.0.0.1/032",
            "10.0.0.1/00",
            "fd00::/064",
        ] {
            assert!(Member::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn fit_checks() {
        let net4 =
            SetSpec { set_type: SetType::HashNet, family: Family::Inet, hashsize: None, maxelem: None, timeout: None, comment: false };
        let ip4 = SetSpec { set_type: SetType::HashIp, ..net4.clone() };
        assert!(Member::parse("10.0.0.0/8").unwrap().check_fits(&net4).is_ok());
        assert!(Member::parse("0.0.0.0/0").unwrap().check_fits(&net4).is_err());
        assert!(Member::parse("10.0.0.0/8").unwrap().check_fits(&ip4).is_err());
        assert!(Member::parse("fd00::1").unwrap().check_fits(&ip4).is_err());
        // What the kernel refuses for each type and family (checked against the kernel by the ava
        // suite): hash:ip the all-zero address, hash:net prefix 0; hash:net takes 0.0.0.0 and ::/128.
        let ip6 = SetSpec { family: Family::Inet6, ..ip4.clone() };
        let net6 = SetSpec { family: Family::Inet6, ..net4.clone() };
        assert!(Member::parse("0.0.0.0").unwrap().check_fits(&ip4).is_err());
        assert!(Member::parse("0.0.0.1").unwrap().check_fits(&ip4).is_ok());
        assert!(Member::parse("::").unwrap().check_fits(&ip6).is_err());
        assert!(Member::parse("::1").unwrap().check_fits(&ip6).is_ok());
        assert!(Member::parse("0.0.0.0").unwrap().check_fits(&net4).is_ok());
        assert!(Member::parse("0.0.0.0/1").unwrap().check_fits(&net4).is_ok());
        assert!(Member::parse("::").unwrap().check_fits(&net6).is_ok());
        assert!(Member::parse("::/0").unwrap().check_fits(&net6).is_err());
    }

    #[test]
    fn ipv6_prints_as_glibc_inet_ntop() {
        // Pairs seen from `ipset save` (glibc 2.36) for these inputs.
        for (input, saved) in [
            ("::1.2.3.4", "::1.2.3.4"),
            ("::0.1.2.3", "::0.1.2.3"),
            ("::0.0.1.2", "::102"),
            ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
            ("::ffff:0:1.2.3.4", "::ffff:0:102:304"),
            ("1::1.2.3.4", "1::102:304"),
            ("0:0:0:0:0:1:0:0", "::1:0:0"),
            ("1:0:0:1:0:0:0:1", "1:0:0:1::1"),
            ("1:0:0:0:1:0:0:0", "1::1:0:0:0"),
            ("::1", "::1"),
            ("::", "::"),
            ("FD00::1", "fd00::1"),
        ] {
            assert_eq!(Member::parse(input).unwrap().to_string(), saved, "{input}");
        }
    }
}
