//! What the kernel of a namespace supports, found by batches the kernel checks and then aborts
//! (nothing is created).

use std::path::Path;

use serde::Serialize;

use super::client::{nl_err, NftClient};
use super::constants::*;
use super::expr::Expr;
use super::kernel::NftKernel;
use super::request::rule_msg;
use super::spec::{Family, HookSpec, KeyType, Op};
use crate::error::{SysCode, SysError};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct Support {
    /// nf_tables with the inet family, base chains at prerouting and forward, verdict maps, marks,
    /// conntrack state, notrack, route lookups (`fib`, nft_fib_inet) and Ethernet addresses: what
    /// the inet table needs.
    pub inet: bool,
    /// Bridge-family base chains that set the mark: what bridged ports need.
    pub bridge: bool,
    /// Conntrack in the bridge family (nf_conntrack_bridge): filtering bridged traffic statefully
    /// without br_netfilter.
    pub conntrack_bridge: bool,
    /// Bridge meta keys (NFT_BRIDGE_META: ibrname and friends).
    pub bridge_meta: bool,
    /// A conntrack zone set from a rule (CONFIG_NF_CONNTRACK_ZONES): what `firewall.conntrackZoneBridges`
    /// needs.
    pub conntrack_zones: bool,
    /// Why something is missing, as the kernel said it.
    pub notes: Vec<String>,
}

pub fn probe(netns: Option<&Path>) -> Result<Support, SysError> {
    let mut c = NftClient::open(netns)?;
    let table = format!("sg-probe-{}", std::process::id());
    let mut s = Support::default();
    let base = |family: Family, chain: &str, hook: super::spec::HookName, priority: i32| Op::Chain {
        family,
        table: table.clone(),
        chain: chain.into(),
        hook: Some(HookSpec { hook, priority }),
    };
    let json = |v: serde_json::Value| -> Vec<super::spec::Stmt> { serde_json::from_value(v).expect("probe statements") };
    use super::spec::HookName::*;
    let inet = vec![
        Op::Table { family: Family::Inet, table: table.clone() },
        Op::Set { family: Family::Inet, table: table.clone(), set: "m".into(), key: KeyType::Mark, map: true },
        Op::Set { family: Family::Inet, table: table.clone(), set: "a".into(), key: KeyType::Ipv4, map: false },
        Op::Set { family: Family::Inet, table: table.clone(), set: "i".into(), key: KeyType::Ifname, map: false },
        Op::Set { family: Family::Inet, table: table.clone(), set: "e".into(), key: KeyType::Ether, map: false },
        Op::Chain { family: Family::Inet, table: table.clone(), chain: "c".into(), hook: None },
        base(Family::Inet, "raw", Prerouting, -300),
        base(Family::Inet, "pre", Prerouting, 0),
        base(Family::Inet, "fwd", Forward, 0),
        Op::Rule {
            family: Family::Inet,
            table: table.clone(),
            chain: "raw".into(),
            stmts: json(serde_json::json!([{ "m": "markIn", "mask": 0xffff0000u32, "set": "m" }, { "m": "notrack" }])),
        },
        // The untracked chain's lookups of where a packet goes: by route (routed), by destination
        // MAC and not to the host itself (bridged).
        Op::Rule {
            family: Family::Inet,
            table: table.clone(),
            chain: "raw".into(),
            stmts: json(serde_json::json!([{ "m": "fibDaddrOifnameIn", "set": "i" }, { "m": "notrack" }])),
        },
        Op::Rule {
            family: Family::Inet,
            table: table.clone(),
            chain: "raw".into(),
            stmts: json(serde_json::json!([{ "m": "etherDaddrIn", "set": "e" }, { "m": "daddrNotLocal" }, { "m": "notrack" }])),
        },
        Op::Rule {
            family: Family::Inet,
            table: table.clone(),
            chain: "pre".into(),
            stmts: json(serde_json::json!([{ "m": "vmap", "key": { "mark": 0xffff0000u32 }, "map": "m" }])),
        },
        Op::Rule {
            family: Family::Inet,
            table: table.clone(),
            chain: "c".into(),
            stmts: json(serde_json::json!([
            { "m": "ctState", "states": ["established", "related"] }, { "m": "nfproto", "v": 4 }, { "m": "addrIn", "family": 4, "dir": "saddr", "set": "a" },
            { "m": "etherSaddr", "mac": "02:00:00:00:00:01" }, { "m": "verdict", "v": "return" }])),
        },
    ];
    let r = c.check(&inet)?;
    s.inet = r.failures.is_empty();
    s.notes.extend(r.failures.iter().map(|f| format!("inet: {}", f.message)));
    let bridge = vec![
        Op::Table { family: Family::Bridge, table: table.clone() },
        Op::Set { family: Family::Bridge, table: table.clone(), set: "d".into(), key: KeyType::Ifname, map: true },
        base(Family::Bridge, "pre", Prerouting, -200),
        base(Family::Bridge, "fwd", Forward, -200),
        Op::Rule {
            family: Family::Bridge,
            table: table.clone(),
            chain: "pre".into(),
            stmts: json(
                serde_json::json!([{ "m": "markSet", "mask": 0xffff0000u32, "id": 0x10000 }, { "m": "vmap", "key": "iifname", "map": "d" }]),
            ),
        },
        Op::Rule {
            family: Family::Bridge,
            table: table.clone(),
            chain: "fwd".into(),
            stmts: json(
                serde_json::json!([{ "m": "ethertype", "v": 0x0806 }, { "m": "arpSender", "mac": "02:00:00:00:00:01", "cidr": "10.0.0.0/24" }, { "m": "verdict", "v": "return" }]),
            ),
        },
    ];
    let r = c.check(&bridge)?;
    s.bridge = r.failures.is_empty();
    s.notes.extend(r.failures.iter().map(|f| format!("bridge: {}", f.message)));
    // Conntrack in a bridge-family chain needs nf_conntrack_bridge: the kernel refuses the ct
    // expression there without it.
    let mut ct = bridge[..3].to_vec();
    ct.push(Op::Rule {
        family: Family::Bridge,
        table: table.clone(),
        chain: "pre".into(),
        stmts: json(serde_json::json!([{ "m": "ctState", "states": ["established"] }, { "m": "verdict", "v": "accept" }])),
    });
    let r = c.check(&ct)?;
    s.conntrack_bridge = r.failures.is_empty();
    s.notes.extend(r.failures.iter().map(|f| format!("nf_conntrack_bridge: {}", f.message)));
    // A zone set before conntrack needs CONFIG_NF_CONNTRACK_ZONES: the kernel refuses `ct zone set`
    // without it.
    let zones = vec![
        inet[0].clone(),
        base(Family::Inet, "raw", Prerouting, -300),
        Op::Rule {
            family: Family::Inet,
            table: table.clone(),
            chain: "raw".into(),
            stmts: json(serde_json::json!([
                { "m": "iifkind", "kind": "bridge" }, { "m": "ifnamePrefix", "key": "iifname", "prefix": "br" }, { "m": "ctZoneSetIif" }
            ])),
        },
    ];
    let r = c.check(&zones)?;
    s.conntrack_zones = r.failures.is_empty();
    s.notes.extend(r.failures.iter().map(|f| format!("conntrack zones: {}", f.message)));
    // A bridge meta key (ibrname) needs NFT_BRIDGE_META; probed with a raw expression.
    let mut reqs = Vec::new();
    let mut log = Vec::new();
    if let Ok(b) = c.build(&bridge[..3], &mut log) {
        reqs = b;
    }
    c.mirror.undo(log);
    reqs.push((rule_msg(Family::Bridge, &table, "pre", vec![Expr::Meta { key: NFT_META_BRI_IIFNAME, dreg: NFT_REG_1 }]), 3));
    let out = NftKernel::batch(&mut c.kernel, reqs.into_iter().map(|(r, _)| r).collect(), false, None)
        .map_err(|e| nl_err(SysCode::NftablesFailed, "probe", e))?;
    s.bridge_meta = out.batch_error.is_none() && out.refused.is_empty() && out.last_acked;
    if !s.bridge_meta {
        s.notes.push("bridge meta: the kernel refuses meta ibrname (CONFIG_NFT_BRIDGE_META)".into());
    }
    Ok(s)
}
