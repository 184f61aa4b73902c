//! The seam between the ipset wire commands (`wire`) and the mirror/sync policy (`client`): what the
//! policy asks of the kernel, so that it can also be driven against a model with failures injected
//! (`model`, in tests).

use super::constants::*;
use super::error::IpsetError;
use super::member::{Family, Member, SetSpec, SetType};

/// Adding or deleting elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adt {
    Add,
    Del,
}

impl Adt {
    pub fn cmd(self) -> u8 {
        match self {
            Adt::Add => IPSET_CMD_ADD,
            Adt::Del => IPSET_CMD_DEL,
        }
    }
}

/// How the elements of one add or delete batch fared: each element the kernel did not acknowledge,
/// by its index in the batch, in order; every other element was applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdtReport {
    pub failed: Vec<(usize, IpsetError)>,
}

impl AdtReport {
    /// The members of `batch` that were applied.
    pub fn applied<'a>(&'a self, batch: &'a [Member]) -> impl Iterator<Item = &'a Member> + 'a {
        let mut failed = self.failed.iter().map(|(i, _)| *i).peekable();
        batch.iter().enumerate().filter_map(move |(i, m)| {
            if failed.peek() == Some(&i) {
                failed.next();
                None
            } else {
                Some(m)
            }
        })
    }
}

/// A set's header as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetHeader {
    pub name: String,
    pub type_name: String,
    pub family: Option<Family>,
    pub revision: u8,
    pub hashsize: u32,
    pub maxelem: u32,
    pub memory: u32,
    pub references: u32,
    pub entries: Option<u32>,
    pub timeout: Option<u32>,
    /// The extensions it was created with (IPSET_FLAG_WITH_*).
    pub cadt_flags: u32,
    /// A netmask or bitmask other than the whole address: elements are stored masked.
    pub masked: bool,
    /// The hash seed the kernel drew when it created the set; listed only for hash:ip revision 5 and
    /// hash:net revision 7 on (the revisions with bucketsize), `None` below them.
    pub initval: Option<u32>,
}

/// What `IPSET_CMD_HEADER` answers, in O(1): a list header, for its member count, walks the whole
/// set in the kernel (about 1 ms per 100k members), this does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetKind {
    pub type_name: String,
    pub family: Option<Family>,
    pub revision: u8,
}

impl SetKind {
    pub fn is(&self, spec: &SetSpec) -> bool {
        self.type_name == spec.set_type.as_str() && self.family == Some(spec.family)
    }
}

/// What tells one set from another made under the same name, type and options: a set destroyed and
/// made again, or swapped in, shows another revision or initval (where the kernel lists one) — as
/// far as a header can tell; sets without an initval of the same revision look alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetIdentity {
    pub revision: u8,
    pub initval: Option<u32>,
}

impl SetHeader {
    pub fn identity(&self) -> SetIdentity {
        SetIdentity { revision: self.revision, initval: self.initval }
    }

    pub fn comment(&self) -> bool {
        self.cadt_flags & IPSET_FLAG_WITH_COMMENT != 0
    }

    /// Why its elements cannot be read as members of a `SetSpec`, if they cannot.
    pub fn unrepresentable(&self) -> Option<String> {
        if SetType::parse(&self.type_name).is_none() {
            return Some(format!("set type {} is not one this library reads (hash:ip and hash:net only)", self.type_name));
        }
        if self.family.is_none() {
            return Some("the set's family is neither inet nor inet6".into());
        }
        if self.masked {
            return Some("the set stores its elements under a netmask or bitmask".into());
        }
        None
    }

    /// The spec this set was created with, if it is a type and layout we read.
    pub fn spec(&self) -> Option<SetSpec> {
        if self.unrepresentable().is_some() {
            return None;
        }
        Some(SetSpec {
            set_type: SetType::parse(&self.type_name)?,
            family: self.family?,
            hashsize: Some(self.hashsize),
            maxelem: Some(self.maxelem),
            timeout: self.timeout,
            comment: self.comment(),
        })
    }

    /// Whether this set can stand for `wanted` as it is (else it must be replaced): the same spec,
    /// and no extension a spec cannot ask for (counters, skbinfo, forceadd — forceadd would evict
    /// members when full).
    pub fn satisfies(&self, wanted: &SetSpec) -> bool {
        self.cadt_flags & !IPSET_FLAG_WITH_COMMENT == 0 && self.spec().is_some_and(|s| s.satisfies(wanted))
    }
}

/// A set as read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSet {
    pub header: SetHeader,
    pub members: Vec<Member>,
    /// Why its contents cannot be given as a member list (a `nomatch` entry, a masked set, another
    /// type…), if they cannot. `members` is then incomplete and must not be taken for the contents.
    pub unrepresentable: Option<String>,
}

/// The kernel operations the sync policy is built from. Every method is one logical command;
/// `adt` is a whole batch and reports per element.
pub trait IpsetKernel {
    fn create(&mut self, name: &str, spec: &SetSpec, exist: bool) -> Result<(), IpsetError>;
    /// A missing set is `SET_NOT_FOUND`.
    fn destroy(&mut self, name: &str) -> Result<(), IpsetError>;
    fn flush(&mut self, name: &str) -> Result<(), IpsetError>;
    fn rename(&mut self, from: &str, to: &str) -> Result<(), IpsetError>;
    fn swap(&mut self, a: &str, b: &str) -> Result<(), IpsetError>;
    fn list_names(&mut self) -> Result<Vec<String>, IpsetError>;
    /// Type, family and revision only, without counting the members (see `SetKind`).
    fn kind(&mut self, name: &str) -> Result<SetKind, IpsetError>;
    fn header(&mut self, name: &str) -> Result<SetHeader, IpsetError>;
    /// The header, asked while `work` runs (work that needs no kernel): the wire asks from a thread
    /// of its own, so that the kernel's walk of the set overlaps with `work`.
    fn header_while<T>(&mut self, name: &str, work: impl FnOnce() -> T) -> (Result<SetHeader, IpsetError>, T) {
        let header = self.header(name);
        (header, work())
    }
    fn read(&mut self, name: &str) -> Result<KernelSet, IpsetError>;
    /// Adds or deletes `members` (`exist`: no error for what is already there / already gone). An
    /// `Err` means the batch could not be run at all; what the kernel refused is in the report.
    fn adt(&mut self, op: Adt, name: &str, set_type: SetType, members: &[Member], exist: bool) -> Result<AdtReport, IpsetError>;
    fn test(&mut self, name: &str, set_type: SetType, member: &Member) -> Result<bool, IpsetError>;
}
