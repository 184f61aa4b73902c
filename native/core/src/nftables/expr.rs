//! nf_tables expressions, data and verdicts: typed, each emitting and parsing its own attributes,
//! with an `Other` fallback that keeps an expression we do not model as its name and raw bytes.
//!
//! Only fields the kernel dumps back are modelled, and a field the kernel always dumps (a lookup's
//! flags) is a plain value rather than an option: so an expression read back from the kernel is
//! `==` to the one written, which is how drift is found (see `reconcile`).

use netlink_packet_core::{DecodeError, DefaultNla, Emitable, Nla, NlaBuffer, NLA_F_NESTED};

use super::constants::*;
use super::nla::*;

/// A verdict: what a rule's immediate or a map element decides.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verdict {
    Accept,
    Drop,
    Continue,
    Break,
    Return,
    Jump(String),
    Goto(String),
    Other(i32),
}

impl Verdict {
    fn code(&self) -> i32 {
        match self {
            Verdict::Accept => NF_ACCEPT,
            Verdict::Drop => NF_DROP,
            Verdict::Continue => NFT_CONTINUE,
            Verdict::Break => NFT_BREAK,
            Verdict::Return => NFT_RETURN,
            Verdict::Jump(_) => NFT_JUMP,
            Verdict::Goto(_) => NFT_GOTO,
            Verdict::Other(c) => *c,
        }
    }
    fn chain(&self) -> Option<&str> {
        match self {
            Verdict::Jump(c) | Verdict::Goto(c) => Some(c),
            _ => None,
        }
    }
    /// The chain a verdict sends packets to, if any (what makes a chain "in use").
    pub fn target(&self) -> Option<&str> {
        self.chain()
    }
    /// Parses the inside of a verdict nest (NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN).
    pub fn parse(nested: &[u8]) -> Result<Self, DecodeError> {
        let mut code = None;
        let mut chain = None;
        for nla in netlink_packet_core::NlasIterator::new(nested) {
            let nla = nla?;
            match nla.kind() {
                NFTA_VERDICT_CODE => code = Some(be32(nla.value())? as i32),
                NFTA_VERDICT_CHAIN => chain = Some(cstr(nla.value())?),
                _ => {}
            }
        }
        let code = code.ok_or_else(|| DecodeError::from("verdict without a code"))?;
        Ok(match (code, chain) {
            (NF_ACCEPT, _) => Verdict::Accept,
            (NF_DROP, _) => Verdict::Drop,
            (NFT_CONTINUE, _) => Verdict::Continue,
            (NFT_BREAK, _) => Verdict::Break,
            (NFT_RETURN, _) => Verdict::Return,
            (NFT_JUMP, Some(c)) => Verdict::Jump(c),
            (NFT_GOTO, Some(c)) => Verdict::Goto(c),
            (c, _) => Verdict::Other(c),
        })
    }
}

/// The value of a register, a comparison or a map element: bytes, or a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Data {
    Value(Vec<u8>),
    Verdict(Verdict),
}

impl Data {
    /// Parses the inside of an `nft_data_attributes` nest.
    pub fn parse(nested: &[u8]) -> Result<Self, DecodeError> {
        for nla in netlink_packet_core::NlasIterator::new(nested) {
            let nla = nla?;
            match nla.kind() {
                NFTA_DATA_VALUE => return Ok(Data::Value(nla.value().to_vec())),
                NFTA_DATA_VERDICT => return Ok(Data::Verdict(Verdict::parse(nla.value())?)),
                _ => {}
            }
        }
        Err(DecodeError::from("data attribute without a value or verdict"))
    }
}

/// Data as the attribute `kind` (a nest holding NFTA_DATA_VALUE or NFTA_DATA_VERDICT).
pub struct DataNla<'a>(pub u16, pub &'a Data);

impl Nla for DataNla<'_> {
    fn value_len(&self) -> usize {
        match self.1 {
            Data::Value(v) => Bytes(NFTA_DATA_VALUE, v).buffer_len(),
            Data::Verdict(v) => VerdictNla(NFTA_DATA_VERDICT, v).buffer_len(),
        }
    }
    fn kind(&self) -> u16 {
        self.0 | NLA_F_NESTED
    }
    fn emit_value(&self, buf: &mut [u8]) {
        match self.1 {
            Data::Value(v) => Bytes(NFTA_DATA_VALUE, v).emit(buf),
            Data::Verdict(v) => VerdictNla(NFTA_DATA_VERDICT, v).emit(buf),
        }
    }
}

/// Bytes as the attribute `kind`: a nest holding one NFTA_DATA_VALUE (without copying them into a
/// `Data`: element keys are many).
pub struct ValueNla<'a>(pub u16, pub &'a [u8]);

impl Nla for ValueNla<'_> {
    fn value_len(&self) -> usize {
        Bytes(NFTA_DATA_VALUE, self.1).buffer_len()
    }
    fn kind(&self) -> u16 {
        self.0 | NLA_F_NESTED
    }
    fn emit_value(&self, buf: &mut [u8]) {
        Bytes(NFTA_DATA_VALUE, self.1).emit(buf)
    }
}

/// A verdict as the nested attribute `kind` (NFTA_DATA_VERDICT in data, NFTA_TRACE_VERDICT in a
/// trace event).
pub struct VerdictNla<'a>(pub u16, pub &'a Verdict);
impl Nla for VerdictNla<'_> {
    fn value_len(&self) -> usize {
        U32(NFTA_VERDICT_CODE, 0).buffer_len() + self.1.chain().map(|c| Str(NFTA_VERDICT_CHAIN, c).buffer_len()).unwrap_or(0)
    }
    fn kind(&self) -> u16 {
        self.0 | NLA_F_NESTED
    }
    fn emit_value(&self, buf: &mut [u8]) {
        let code = U32(NFTA_VERDICT_CODE, self.1.code() as u32);
        match self.1.chain() {
            Some(c) => emit_dyn(&[&code, &Str(NFTA_VERDICT_CHAIN, c)], buf),
            None => code.emit(buf),
        }
    }
}

/// What a counter has counted. The counts are the kernel's record of the packets a rule saw, not
/// part of what the rule is: two counters are the same expression whatever they counted, so a rule
/// read back with its counts is `==` to the one written with none (drift is judged by `==`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub packets: u64,
    pub bytes: u64,
}

impl PartialEq for Counts {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Counts {}
impl std::hash::Hash for Counts {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

/// One expression of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// Loads `key` (NFT_META_*) into `dreg`.
    Meta {
        key: u32,
        dreg: u32,
    },
    /// Sets `key` from `sreg`.
    MetaSet {
        key: u32,
        sreg: u32,
    },
    /// Loads `len` bytes at `offset` of header `base` into `dreg`.
    Payload {
        dreg: u32,
        base: u32,
        offset: u32,
        len: u32,
    },
    Cmp {
        sreg: u32,
        op: u32,
        data: Vec<u8>,
    },
    /// dreg = (sreg & mask) ^ xor over `len` bytes.
    Bitwise {
        sreg: u32,
        dreg: u32,
        len: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// Whether `sreg` lies in [from, to] (op EQ) or not (NEQ).
    Range {
        sreg: u32,
        op: u32,
        from: Vec<u8>,
        to: Vec<u8>,
    },
    /// Set membership of `sreg`; for a map, the mapped data goes to `dreg` (0: the verdict).
    Lookup {
        set: String,
        sreg: u32,
        dreg: Option<u32>,
        flags: u32,
    },
    Immediate {
        dreg: u32,
        data: Data,
    },
    /// Loads conntrack `key` (NFT_CT_*) into `dreg`.
    Ct {
        key: u32,
        dreg: u32,
    },
    /// Sets conntrack `key` from `sreg`; before conntrack, a zone so set is the template the packet
    /// is looked up and tracked with.
    CtSet {
        key: u32,
        sreg: u32,
    },
    /// A route lookup: `result` (NFT_FIB_RESULT_*) of the address `flags` name into `dreg`.
    Fib {
        dreg: u32,
        result: u32,
        flags: u32,
    },
    /// Marks the packet as not to be tracked.
    Notrack,
    /// Counts the packets and bytes that reach it.
    Counter(Counts),
    /// Sends the packet to nfnetlink_log group `group`, with the prefix.
    Log {
        group: u16,
        prefix: Option<String>,
    },
    /// Matches while a token bucket has tokens: `rate` per `unit` seconds, `burst` at most
    /// (`kind` NFT_LIMIT_PKTS: packets).
    Limit {
        rate: u64,
        unit: u64,
        burst: u32,
        kind: u32,
        flags: u32,
    },
    /// An expression this crate does not model: its name and NFTA_EXPR_DATA as sent.
    Other {
        name: String,
        data: Vec<u8>,
    },
}

/// One attribute inside NFTA_EXPR_DATA, borrowed from the expression, so an expression can list
/// what it emits without copying its data (it is listed each time its length is asked for).
#[derive(Clone, Copy)]
enum A<'a> {
    U16(u16, u16),
    U32(u16, u32),
    U64(u16, u64),
    Str(u16, &'a str),
    /// Bytes nested as one NFTA_DATA_VALUE.
    Value(u16, &'a [u8]),
    Data(u16, &'a Data),
}

/// An expression's attributes, at most six, held inline: they are listed each time an expression is
/// measured or emitted, several times per message, and a list on the heap each time (with its data
/// copied) made encoding a binding's transaction twice as dear (`encode_timing.rs`).
#[derive(Clone, Copy)]
struct Attrs<'a> {
    items: [A<'a>; 6],
    len: usize,
}

impl<'a> Attrs<'a> {
    fn of(list: &[A<'a>]) -> Self {
        let mut a = Attrs { items: [A::U16(0, 0); 6], len: 0 };
        for x in list {
            a.push(*x);
        }
        a
    }
    fn push(&mut self, x: A<'a>) {
        self.items[self.len] = x;
        self.len += 1;
    }
}

impl<'a> std::ops::Deref for Attrs<'a> {
    type Target = [A<'a>];
    fn deref(&self) -> &[A<'a>] {
        &self.items[..self.len]
    }
}

impl Nla for A<'_> {
    fn value_len(&self) -> usize {
        match self {
            A::U16(..) => 2,
            A::U32(..) => 4,
            A::U64(..) => 8,
            A::Str(_, s) => cstr_len(s),
            A::Value(k, b) => ValueNla(*k, b).value_len(),
            A::Data(k, d) => DataNla(*k, d).value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            A::U16(k, _) | A::U32(k, _) | A::U64(k, _) | A::Str(k, _) => *k,
            A::Value(k, _) | A::Data(k, _) => *k | NLA_F_NESTED,
        }
    }
    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            A::U16(_, v) => buf[..2].copy_from_slice(&v.to_be_bytes()),
            A::U32(k, v) => U32(*k, *v).emit_value(buf),
            A::U64(_, v) => buf[..8].copy_from_slice(&v.to_be_bytes()),
            A::Str(k, s) => Str(*k, s).emit_value(buf),
            A::Value(k, b) => ValueNla(*k, b).emit_value(buf),
            A::Data(k, d) => DataNla(*k, d).emit_value(buf),
        }
    }
}

impl Expr {
    pub fn name(&self) -> &str {
        match self {
            Expr::Meta { .. } | Expr::MetaSet { .. } => "meta",
            Expr::Payload { .. } => "payload",
            Expr::Cmp { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Range { .. } => "range",
            Expr::Lookup { .. } => "lookup",
            Expr::Immediate { .. } => "immediate",
            Expr::Ct { .. } | Expr::CtSet { .. } => "ct",
            Expr::Fib { .. } => "fib",
            Expr::Notrack => "notrack",
            Expr::Counter(_) => "counter",
            Expr::Limit { .. } => "limit",
            Expr::Log { .. } => "log",
            Expr::Other { name, .. } => name,
        }
    }

    /// The chain this expression sends packets to (a jump or goto), if any.
    pub fn jump_target(&self) -> Option<&str> {
        match self {
            Expr::Immediate { data: Data::Verdict(v), .. } => v.target(),
            _ => None,
        }
    }

    fn attrs(&self) -> Attrs<'_> {
        match self {
            Expr::Meta { key, dreg } => Attrs::of(&[A::U32(NFTA_META_KEY, *key), A::U32(NFTA_META_DREG, *dreg)]),
            Expr::MetaSet { key, sreg } => Attrs::of(&[A::U32(NFTA_META_KEY, *key), A::U32(NFTA_META_SREG, *sreg)]),
            Expr::Payload { dreg, base, offset, len } => Attrs::of(&[
                A::U32(NFTA_PAYLOAD_DREG, *dreg),
                A::U32(NFTA_PAYLOAD_BASE, *base),
                A::U32(NFTA_PAYLOAD_OFFSET, *offset),
                A::U32(NFTA_PAYLOAD_LEN, *len),
            ]),
            Expr::Cmp { sreg, op, data } => {
                Attrs::of(&[A::U32(NFTA_CMP_SREG, *sreg), A::U32(NFTA_CMP_OP, *op), A::Value(NFTA_CMP_DATA, data)])
            }
            Expr::Bitwise { sreg, dreg, len, mask, xor } => Attrs::of(&[
                A::U32(NFTA_BITWISE_SREG, *sreg),
                A::U32(NFTA_BITWISE_DREG, *dreg),
                A::U32(NFTA_BITWISE_LEN, *len),
                A::U32(NFTA_BITWISE_OP, NFT_BITWISE_MASK_XOR),
                A::Value(NFTA_BITWISE_MASK, mask),
                A::Value(NFTA_BITWISE_XOR, xor),
            ]),
            Expr::Range { sreg, op, from, to } => Attrs::of(&[
                A::U32(NFTA_RANGE_SREG, *sreg),
                A::U32(NFTA_RANGE_OP, *op),
                A::Value(NFTA_RANGE_FROM_DATA, from),
                A::Value(NFTA_RANGE_TO_DATA, to),
            ]),
            Expr::Lookup { set, sreg, dreg, flags } => {
                let mut a = Attrs::of(&[A::Str(NFTA_LOOKUP_SET, set), A::U32(NFTA_LOOKUP_SREG, *sreg)]);
                if let Some(d) = dreg {
                    a.push(A::U32(NFTA_LOOKUP_DREG, *d));
                }
                if *flags != 0 {
                    a.push(A::U32(NFTA_LOOKUP_FLAGS, *flags));
                }
                a
            }
            Expr::Immediate { dreg, data } => Attrs::of(&[A::U32(NFTA_IMMEDIATE_DREG, *dreg), A::Data(NFTA_IMMEDIATE_DATA, data)]),
            Expr::Ct { key, dreg } => Attrs::of(&[A::U32(NFTA_CT_KEY, *key), A::U32(NFTA_CT_DREG, *dreg)]),
            Expr::CtSet { key, sreg } => Attrs::of(&[A::U32(NFTA_CT_KEY, *key), A::U32(NFTA_CT_SREG, *sreg)]),
            Expr::Fib { dreg, result, flags } => {
                Attrs::of(&[A::U32(NFTA_FIB_DREG, *dreg), A::U32(NFTA_FIB_RESULT, *result), A::U32(NFTA_FIB_FLAGS, *flags)])
            }
            Expr::Counter(c) => Attrs::of(&[A::U64(NFTA_COUNTER_BYTES, c.bytes), A::U64(NFTA_COUNTER_PACKETS, c.packets)]),
            Expr::Log { group, prefix } => {
                let mut a = Attrs::of(&[A::U16(NFTA_LOG_GROUP, *group)]);
                if let Some(p) = prefix {
                    a.push(A::Str(NFTA_LOG_PREFIX, p));
                }
                a
            }
            Expr::Limit { rate, unit, burst, kind, flags } => Attrs::of(&[
                A::U64(NFTA_LIMIT_RATE, *rate),
                A::U64(NFTA_LIMIT_UNIT, *unit),
                A::U32(NFTA_LIMIT_BURST, *burst),
                A::U32(NFTA_LIMIT_TYPE, *kind),
                A::U32(NFTA_LIMIT_FLAGS, *flags),
            ]),
            Expr::Notrack | Expr::Other { .. } => Attrs::of(&[]),
        }
    }

    /// What goes in NFTA_EXPR_DATA: the attributes, or for `Other` the bytes as they came.
    fn data(&self) -> ExprData<'_> {
        match self {
            Expr::Other { data, .. } => ExprData::Raw(data),
            _ => {
                let attrs = self.attrs();
                ExprData::Attrs { len: emitted_len(&attrs[..]), attrs }
            }
        }
    }

    /// Parses one NFTA_LIST_ELEM of NFTA_RULE_EXPRESSIONS (its value: name and data).
    pub fn parse(elem: &[u8]) -> Result<Self, DecodeError> {
        let mut name = None;
        let mut data: &[u8] = &[];
        for nla in netlink_packet_core::NlasIterator::new(elem) {
            let nla = nla?;
            match nla.kind() {
                NFTA_EXPR_NAME => name = Some(cstr(nla.value())?),
                NFTA_EXPR_DATA => data = value_of(nla),
                _ => {}
            }
        }
        let name = name.ok_or_else(|| DecodeError::from("expression without a name"))?;
        Ok(Self::parse_data(&name, data)?.unwrap_or_else(|| Expr::Other { name, data: data.to_vec() }))
    }

    /// The typed expression, or None when its name or an attribute is not one we model.
    fn parse_data(name: &str, data: &[u8]) -> Result<Option<Self>, DecodeError> {
        if name == "counter" {
            return parse_counter(data);
        }
        if name == "limit" {
            return parse_limit(data);
        }
        if name == "log" {
            return parse_log(data);
        }
        let mut u = std::collections::HashMap::<u16, u32>::new();
        let mut s = std::collections::HashMap::<u16, String>::new();
        let mut d = std::collections::HashMap::<u16, Data>::new();
        let (ints, strs, datas): (&[u16], &[u16], &[u16]) = match name {
            "meta" => (&[NFTA_META_KEY, NFTA_META_DREG, NFTA_META_SREG], &[], &[]),
            "payload" => (&[NFTA_PAYLOAD_DREG, NFTA_PAYLOAD_BASE, NFTA_PAYLOAD_OFFSET, NFTA_PAYLOAD_LEN], &[], &[]),
            "cmp" => (&[NFTA_CMP_SREG, NFTA_CMP_OP], &[], &[NFTA_CMP_DATA]),
            "bitwise" => {
                (&[NFTA_BITWISE_SREG, NFTA_BITWISE_DREG, NFTA_BITWISE_LEN, NFTA_BITWISE_OP], &[], &[NFTA_BITWISE_MASK, NFTA_BITWISE_XOR])
            }
            "range" => (&[NFTA_RANGE_SREG, NFTA_RANGE_OP], &[], &[NFTA_RANGE_FROM_DATA, NFTA_RANGE_TO_DATA]),
            "lookup" => (&[NFTA_LOOKUP_SREG, NFTA_LOOKUP_DREG, NFTA_LOOKUP_FLAGS], &[NFTA_LOOKUP_SET], &[]),
            "immediate" => (&[NFTA_IMMEDIATE_DREG], &[], &[NFTA_IMMEDIATE_DATA]),
            "ct" => (&[NFTA_CT_KEY, NFTA_CT_DREG, NFTA_CT_SREG], &[], &[]),
            "fib" => (&[NFTA_FIB_DREG, NFTA_FIB_RESULT, NFTA_FIB_FLAGS], &[], &[]),
            "notrack" => (&[], &[], &[]),
            _ => return Ok(None),
        };
        for nla in netlink_packet_core::NlasIterator::new(data) {
            let nla: NlaBuffer<&[u8]> = nla?;
            let k = nla.kind();
            if ints.contains(&k) {
                u.insert(k, be32(nla.value())?);
            } else if strs.contains(&k) {
                s.insert(k, cstr(nla.value())?);
            } else if datas.contains(&k) {
                d.insert(k, Data::parse(nla.value())?);
            } else {
                return Ok(None);
            }
        }
        let val = |d: &mut std::collections::HashMap<u16, Data>, k: u16| match d.remove(&k) {
            Some(Data::Value(v)) => Some(v),
            _ => None,
        };
        Ok(match name {
            "meta" => match (u.get(&NFTA_META_KEY), u.get(&NFTA_META_DREG), u.get(&NFTA_META_SREG)) {
                (Some(&key), Some(&dreg), None) => Some(Expr::Meta { key, dreg }),
                (Some(&key), None, Some(&sreg)) => Some(Expr::MetaSet { key, sreg }),
                _ => None,
            },
            "payload" => {
                match (u.get(&NFTA_PAYLOAD_DREG), u.get(&NFTA_PAYLOAD_BASE), u.get(&NFTA_PAYLOAD_OFFSET), u.get(&NFTA_PAYLOAD_LEN)) {
                    (Some(&dreg), Some(&base), Some(&offset), Some(&len)) => Some(Expr::Payload { dreg, base, offset, len }),
                    _ => None,
                }
            }
            "cmp" => match (u.get(&NFTA_CMP_SREG).copied(), u.get(&NFTA_CMP_OP).copied(), val(&mut d, NFTA_CMP_DATA)) {
                (Some(sreg), Some(op), Some(data)) => Some(Expr::Cmp { sreg, op, data }),
                _ => None,
            },
            "bitwise" => {
                if u.get(&NFTA_BITWISE_OP).copied().unwrap_or(NFT_BITWISE_MASK_XOR) != NFT_BITWISE_MASK_XOR {
                    return Ok(None);
                }
                match (
                    u.get(&NFTA_BITWISE_SREG).copied(),
                    u.get(&NFTA_BITWISE_DREG).copied(),
                    u.get(&NFTA_BITWISE_LEN).copied(),
                    val(&mut d, NFTA_BITWISE_MASK),
                    val(&mut d, NFTA_BITWISE_XOR),
                ) {
                    (Some(sreg), Some(dreg), Some(len), Some(mask), Some(xor)) => Some(Expr::Bitwise { sreg, dreg, len, mask, xor }),
                    _ => None,
                }
            }
            "range" => match (
                u.get(&NFTA_RANGE_SREG).copied(),
                u.get(&NFTA_RANGE_OP).copied(),
                val(&mut d, NFTA_RANGE_FROM_DATA),
                val(&mut d, NFTA_RANGE_TO_DATA),
            ) {
                (Some(sreg), Some(op), Some(from), Some(to)) => Some(Expr::Range { sreg, op, from, to }),
                _ => None,
            },
            "lookup" => match (s.remove(&NFTA_LOOKUP_SET), u.get(&NFTA_LOOKUP_SREG).copied()) {
                (Some(set), Some(sreg)) => Some(Expr::Lookup {
                    set,
                    sreg,
                    dreg: u.get(&NFTA_LOOKUP_DREG).copied(),
                    flags: u.get(&NFTA_LOOKUP_FLAGS).copied().unwrap_or(0),
                }),
                _ => None,
            },
            "immediate" => match (u.get(&NFTA_IMMEDIATE_DREG).copied(), d.remove(&NFTA_IMMEDIATE_DATA)) {
                (Some(dreg), Some(data)) => Some(Expr::Immediate { dreg, data }),
                _ => None,
            },
            "ct" => match (u.get(&NFTA_CT_KEY).copied(), u.get(&NFTA_CT_DREG).copied(), u.get(&NFTA_CT_SREG).copied()) {
                (Some(key), Some(dreg), None) => Some(Expr::Ct { key, dreg }),
                (Some(key), None, Some(sreg)) => Some(Expr::CtSet { key, sreg }),
                _ => None,
            },
            "fib" => match (u.get(&NFTA_FIB_DREG).copied(), u.get(&NFTA_FIB_RESULT).copied(), u.get(&NFTA_FIB_FLAGS).copied()) {
                (Some(dreg), Some(result), Some(flags)) => Some(Expr::Fib { dreg, result, flags }),
                _ => None,
            },
            "notrack" => Some(Expr::Notrack),
            _ => None,
        })
    }
}

/// A counter's counts (64-bit, big endian; the kernel pads them with NFTA_COUNTER_PAD).
fn parse_counter(data: &[u8]) -> Result<Option<Expr>, DecodeError> {
    let mut c = Counts::default();
    for nla in netlink_packet_core::NlasIterator::new(data) {
        let nla = nla?;
        match nla.kind() {
            NFTA_COUNTER_BYTES => c.bytes = be64(nla.value())?,
            NFTA_COUNTER_PACKETS => c.packets = be64(nla.value())?,
            _ => {}
        }
    }
    Ok(Some(Expr::Counter(c)))
}

/// A log to a netlink group; one with other options (a level, a snap length) is not ours: Other.
fn parse_log(data: &[u8]) -> Result<Option<Expr>, DecodeError> {
    let (mut group, mut prefix) = (None, None);
    for nla in netlink_packet_core::NlasIterator::new(data) {
        let nla = nla?;
        match nla.kind() {
            NFTA_LOG_GROUP => group = Some(nla.value().get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or("short log group")?),
            NFTA_LOG_PREFIX => prefix = Some(cstr(nla.value())?),
            _ => return Ok(None),
        }
    }
    Ok(group.map(|group| Expr::Log { group, prefix }))
}

/// A limit's bucket (rate and unit 64-bit, the rest 32-bit; the kernel pads the 64-bit ones).
fn parse_limit(data: &[u8]) -> Result<Option<Expr>, DecodeError> {
    let (mut rate, mut unit, mut burst, mut kind, mut flags) = (None, None, None, None, 0);
    for nla in netlink_packet_core::NlasIterator::new(data) {
        let nla = nla?;
        match nla.kind() {
            NFTA_LIMIT_RATE => rate = Some(be64(nla.value())?),
            NFTA_LIMIT_UNIT => unit = Some(be64(nla.value())?),
            NFTA_LIMIT_BURST => burst = Some(be32(nla.value())?),
            NFTA_LIMIT_TYPE => kind = Some(be32(nla.value())?),
            NFTA_LIMIT_FLAGS => flags = be32(nla.value())?,
            _ => {}
        }
    }
    Ok(match (rate, unit, burst, kind) {
        (Some(rate), Some(unit), Some(burst), Some(kind)) => Some(Expr::Limit { rate, unit, burst, kind, flags }),
        _ => None,
    })
}

/// An expression as one NFTA_LIST_ELEM of NFTA_RULE_EXPRESSIONS.
impl Nla for Expr {
    fn value_len(&self) -> usize {
        let name = Str(NFTA_EXPR_NAME, self.name()).buffer_len();
        let data = self.data().value_len();
        name + if data > 0 || !matches!(self, Expr::Notrack) { 4 + data } else { 0 }
    }
    fn kind(&self) -> u16 {
        NFTA_LIST_ELEM | NLA_F_NESTED
    }
    fn emit_value(&self, buf: &mut [u8]) {
        let name = Str(NFTA_EXPR_NAME, self.name());
        let n = name.buffer_len();
        name.emit(&mut buf[..n]);
        // Listed once, for both its length and its bytes.
        let data = self.data();
        if matches!(self, Expr::Notrack) && data.value_len() == 0 {
            return;
        }
        data.emit(&mut buf[n..n + data.buffer_len()]);
    }
}

/// NFTA_EXPR_DATA of an expression. The attributes' length is summed once: emitting asks for it
/// several times.
enum ExprData<'a> {
    Attrs {
        attrs: Attrs<'a>,
        len: usize,
    },
    /// An expression this crate does not model: its data as received.
    Raw(&'a [u8]),
}
impl Nla for ExprData<'_> {
    fn value_len(&self) -> usize {
        match self {
            ExprData::Attrs { len, .. } => *len,
            ExprData::Raw(b) => b.len(),
        }
    }
    fn kind(&self) -> u16 {
        NFTA_EXPR_DATA | NLA_F_NESTED
    }
    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            ExprData::Attrs { attrs, .. } => emit_all(&attrs[..], buf),
            ExprData::Raw(b) => buf[..b.len()].copy_from_slice(b),
        }
    }
}

/// Parses the value of NFTA_RULE_EXPRESSIONS.
pub fn parse_exprs(nested: &[u8]) -> Result<Vec<Expr>, DecodeError> {
    parse_all(nested, |nla| Expr::parse(nla.value()))
}

/// Keeps an unparsed attribute (for attribute enums' `Other`).
pub fn keep(nla: &NlaBuffer<&[u8]>) -> Result<DefaultNla, DecodeError> {
    other(nla)
}
