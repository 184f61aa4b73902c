//! The TypeScript types of what crosses the addon boundary for nf_tables — the operations and rule
//! statements the backend sends, the results it gets, the trace events and logged packets it
//! hears — generated from the Rust declarations above
//! (ts-rs reads their serde attributes), so that they are declared once. The JSON text they travel
//! as is faster to cross than JS objects read property by property (bench/nft-boundary.ts).
//! The generated file must be current: `SG_WRITE_TS=1 cargo test -p sg-agent-core ts_types` writes it.

#[cfg(test)]
mod tests {
    use ts_rs::{Config, TS};

    use crate::nflog::reader::{EtherHeader, LogPacket};
    use crate::nftables::client::TransactResult;
    use crate::nftables::error::OpFailure;
    use crate::nftables::probe::Support;
    use crate::nftables::readback::{ChainDesc, RuleStat, SetDesc, TableDesc};
    use crate::nftables::reconcile::{ReconcileReport, UnknownObject};
    use crate::nftables::spec::*;
    use crate::nftables::trace::TraceEvent;
    use crate::packet::PacketInfo;

    const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../src/addon/nftables-types.ts");

    fn generated() -> String {
        let cfg = Config::new();
        let decls = [
            Family::decl(&cfg),
            HookName::decl(&cfg),
            HookSpec::decl(&cfg),
            KeyType::decl(&cfg),
            VerdictSpec::decl(&cfg),
            KeySpec::decl(&cfg),
            ElemSpec::decl(&cfg),
            Dir::decl(&cfg),
            PortDir::decl(&cfg),
            CtState::decl(&cfg),
            IfKey::decl(&cfg),
            MapKey::decl(&cfg),
            Stmt::decl(&cfg),
            Op::decl(&cfg),
            OpFailure::decl(&cfg),
            TransactResult::decl(&cfg),
            UnknownObject::decl(&cfg),
            ReconcileReport::decl(&cfg),
            ChainDesc::decl(&cfg),
            SetDesc::decl(&cfg),
            TableDesc::decl(&cfg),
            RuleStat::decl(&cfg),
            PacketInfo::decl(&cfg),
            TraceEvent::decl(&cfg),
            EtherHeader::decl(&cfg),
            LogPacket::decl(&cfg),
            Support::decl(&cfg),
        ];
        let mut out = String::from(
            "// Generated from native/core/src/nftables (spec.rs and the result types) by ts-rs; do not edit.\n\
             // Regenerate: SG_WRITE_TS=1 cargo test -p sg-agent-core ts_types\n",
        );
        for d in decls {
            out.push_str("export ");
            out.push_str(&d);
            out.push('\n');
        }
        out
    }

    #[test]
    fn the_typescript_types_are_generated_from_these_declarations() {
        let want = generated();
        if std::env::var_os("SG_WRITE_TS").is_some() {
            std::fs::write(FILE, &want).expect("write the generated types");
        }
        let have = std::fs::read_to_string(FILE).unwrap_or_default();
        assert!(have == want, "{FILE} is not what the Rust declarations generate: run SG_WRITE_TS=1 cargo test -p sg-agent-core ts_types");
    }
}
