//! Set members, set specs and set names: parsing and validation, before anything reaches the kernel.

use std::fmt;
use std::net::IpAddr;

use super::attr::ElemAttr;
use super::constants::{IPSET_MAXNAMELEN, NFPROTO_IPV4, NFPROTO_IPV6};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Member {
    pub addr: IpAddr,
    pub prefix: u8,
}

const MAX_MEMBER_TEXT: usize = 64;

impl Member {
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

    /// Checks that this member fits a set of `spec`; the reason is for the caller's error.
    pub fn check_fits(&self, spec: &SetSpec) -> Result<(), String> {
        if self.family() != spec.family {
            return Err(format!("{} address in a {} set", self.family().as_str(), spec.family.as_str()));
        }
        match spec.set_type {
            SetType::HashIp if !self.is_host() => Err("hash:ip sets hold single addresses, not networks".into()),
            // The kernel refuses a zero prefix in hash:net; an "everything" entry must be modelled above us.
            SetType::HashNet if self.prefix == 0 => Err("prefix length 0 is not allowed in hash:net".into()),
            _ => Ok(()),
        }
    }

    /// Element attributes for the kernel; `lineno` ties a failure report back to this element.
    pub fn to_elem(&self, set_type: SetType, lineno: Option<u32>) -> Vec<ElemAttr> {
        let mut e = Vec::with_capacity(3);
        e.push(ElemAttr::Ip(self.addr));
        if set_type == SetType::HashNet {
            e.push(ElemAttr::Cidr(self.prefix));
        }
        if let Some(n) = lineno {
            e.push(ElemAttr::LineNo(n));
        }
        e
    }

    /// Reads an element of a list dump back into a member.
    pub fn from_elem(elem: &[ElemAttr]) -> Option<Member> {
        let addr = elem.iter().find_map(|a| match a {
            ElemAttr::Ip(ip) => Some(*ip),
            _ => None,
        })?;
        let max = Member::family_of(addr).max_prefix();
        let prefix = elem
            .iter()
            .find_map(|a| match a {
                ElemAttr::Cidr(c) => Some(*c),
                _ => None,
            })
            .unwrap_or(max)
            .min(max);
        Some(Member { addr: mask(addr, prefix), prefix })
    }
}

impl fmt::Display for Member {
    /// Host addresses without a prefix, as `ipset save` prints them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
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

/// Set names are ours to choose, so we accept only a conservative alphabet: nothing a shell,
/// iptables-restore or `ipset save` could read differently.
pub fn validate_set_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("set name is empty".into());
    }
    if name.len() >= IPSET_MAXNAMELEN {
        return Err(format!("set name is {} bytes; the limit is {}", name.len(), IPSET_MAXNAMELEN - 1));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.' || b == b':') {
        return Err("set name may hold only A-Z a-z 0-9 _ - . :".into());
    }
    if name.starts_with('-') {
        return Err("set name may not start with '-'".into());
    }
    Ok(())
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
        for bad in ["", "10.0.0", "10.0.0.256", "010.0.0.1", "10.0.0.1/33", "10.0.0.1/", "10.0.0.1/+1",
            "fd00::1/129", "fe80::1%eth0", "10.0.0.1 ", "a;b", "10.0.0.1/24/1", "::g"] {
            assert!(Member::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn fit_checks() {
        let net4 = SetSpec { set_type: SetType::HashNet, family: Family::Inet, hashsize: None, maxelem: None, timeout: None, comment: false };
        let ip4 = SetSpec { set_type: SetType::HashIp, ..net4.clone() };
        assert!(Member::parse("10.0.0.0/8").unwrap().check_fits(&net4).is_ok());
        assert!(Member::parse("0.0.0.0/0").unwrap().check_fits(&net4).is_err());
        assert!(Member::parse("10.0.0.0/8").unwrap().check_fits(&ip4).is_err());
        assert!(Member::parse("fd00::1").unwrap().check_fits(&ip4).is_err());
    }

    #[test]
    fn set_names() {
        assert!(validate_set_name("sg-abc_1.v4").is_ok());
        assert!(validate_set_name(&"a".repeat(31)).is_ok());
        assert!(validate_set_name(&"a".repeat(32)).is_err());
        for bad in ["", "a b", "a;b", "a\nb", "-x", "ü", "a'b"] {
            assert!(validate_set_name(bad).is_err(), "{bad:?}");
        }
    }
}
