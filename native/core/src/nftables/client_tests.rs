//! The client's logic against the model kernel, without root: transactions whose every message in
//! turn is refused, commits that fail, answers that are lost after the kernel committed, and foreign
//! changes the reconcile must find and put back. After every outcome the kernel and the mirror must
//! agree, and a transaction that failed must have changed neither. The same paths run against the
//! real kernel in test/firewall-nftables.test.ts and test/nftables-transactions.test.ts.

use std::collections::BTreeMap;

use super::cidr::Net;
use super::client::NftClient;
use super::constants::*;
use super::expr::{Data, Expr};
use super::mirror::{ElemKey, Mirror};
use super::model::{Fault, ModelKernel, ModelTable};
use super::reconcile::Scope;
use super::spec::{Family, Op};

type Client = NftClient<ModelKernel>;

const T: &str = "sgt";

fn ops(json: serde_json::Value) -> Vec<Op> {
    serde_json::from_value(json).expect("operations")
}

fn client() -> Client {
    NftClient::with_kernel(ModelKernel::default(), 4242)
}

/// A table with a base chain dispatching through a verdict map to a port chain that matches an
/// address set: every kind of object and every reference between them.
fn base_ops() -> Vec<Op> {
    ops(serde_json::json!([
        { "op": "table", "family": "inet", "table": T },
        { "op": "set", "family": "inet", "table": T, "set": "g4", "key": "ipv4" },
        { "op": "members", "family": "inet", "table": T, "set": "g4", "add": ["10.0.0.1", "10.0.1.0/24"] },
        { "op": "set", "family": "inet", "table": T, "set": "to", "key": "ifname", "map": true },
        { "op": "chain", "family": "inet", "table": T, "chain": "port-a" },
        { "op": "rule", "family": "inet", "table": T, "chain": "port-a", "stmts": [
            { "m": "nfproto", "v": 4 }, { "m": "addrIn", "family": 4, "dir": "saddr", "set": "g4" }, { "m": "verdict", "v": "accept" }] },
        { "op": "rule", "family": "inet", "table": T, "chain": "port-a", "stmts": [{ "m": "verdict", "v": "drop" }] },
        { "op": "chain", "family": "inet", "table": T, "chain": "fwd", "hook": { "hook": "forward", "priority": 0 } },
        { "op": "rule", "family": "inet", "table": T, "chain": "fwd", "stmts": [{ "m": "vmap", "key": "oifname", "map": "to" }] },
        { "op": "elems", "family": "inet", "table": T, "set": "to", "add": [{ "key": "tap-a", "verdict": { "jump": "port-a" } }] },
    ]))
}

/// A second port, a member change and a rule change: a transaction over existing objects.
fn change_ops() -> Vec<Op> {
    ops(serde_json::json!([
        { "op": "members", "family": "inet", "table": T, "set": "g4", "add": ["10.0.0.2"], "del": ["10.0.0.1"] },
        { "op": "chain", "family": "inet", "table": T, "chain": "port-b" },
        { "op": "rule", "family": "inet", "table": T, "chain": "port-b", "stmts": [{ "m": "verdict", "v": "drop" }] },
        { "op": "flushChain", "family": "inet", "table": T, "chain": "port-a" },
        { "op": "rule", "family": "inet", "table": T, "chain": "port-a", "stmts": [{ "m": "verdict", "v": "accept" }] },
        { "op": "elems", "family": "inet", "table": T, "set": "to", "add": [{ "key": "tap-b", "verdict": { "jump": "port-b" } }] },
    ]))
}

/// Everything the mirror says, in an order that compares.
type Snapshot = BTreeMap<
    (Family, String),
    (BTreeMap<String, (bool, Vec<Vec<Expr>>)>, BTreeMap<String, (Vec<(ElemKey, Option<Data>)>, Vec<(Net, u32)>)>),
>;

fn snapshot(m: &Mirror) -> Snapshot {
    m.tables
        .iter()
        .map(|(k, t)| {
            let chains = t.chains.iter().map(|(n, c)| (n.clone(), (c.hook.is_some(), c.rules.clone()))).collect();
            let sets = t
                .sets
                .iter()
                .map(|(n, s)| {
                    let mut elems: Vec<(ElemKey, Option<Data>)> = s.elems.iter().map(|(k, d)| (k.clone(), d.clone())).collect();
                    elems.sort_by(|a, b| a.0.cmp(&b.0));
                    let mut members: Vec<(Net, u32)> = s.union.iter().flat_map(|u| u.members().map(|(n, c)| (*n, c))).collect();
                    members.sort();
                    (n.clone(), (elems, members))
                })
                .collect();
            (k.clone(), (chains, sets))
        })
        .collect()
}

/// The kernel holds exactly what the mirror says (tables, chains and their hooks and rules, sets and
/// their elements).
fn assert_agree(c: &Client, what: &str) {
    let mirror = &c.mirror;
    let kernel = &c.kernel().tables;
    let ours: Vec<_> = kernel.keys().filter(|(_, n)| n == T).cloned().collect();
    let mirrored: Vec<_> = mirror.tables.keys().map(|(f, n)| (f.nfproto(), n.clone())).collect();
    assert_eq!(ours, mirrored, "{what}: tables");
    for ((family, name), t) in &mirror.tables {
        let k: &ModelTable = &kernel[&(family.nfproto(), name.clone())];
        assert_eq!(k.chains.keys().collect::<Vec<_>>(), t.chains.keys().collect::<Vec<_>>(), "{what}: chains of {name}");
        for (cn, ch) in &t.chains {
            assert_eq!(k.chains[cn].rules, ch.rules, "{what}: rules of {cn}");
            assert_eq!(k.chains[cn].hook.is_some(), ch.hook.is_some(), "{what}: hook of {cn}");
        }
        assert_eq!(k.sets.keys().collect::<Vec<_>>(), t.sets.keys().collect::<Vec<_>>(), "{what}: sets of {name}");
        for (sn, s) in &t.sets {
            let mut want: Vec<_> = s.elems.iter().map(|(k, d)| (k.clone(), d.clone())).collect();
            want.sort_by(|a, b| a.0.cmp(&b.0));
            let have: Vec<_> = k.sets[sn].elems.iter().map(|(k, d)| (k.clone(), d.clone())).collect();
            assert_eq!(have, want, "{what}: elements of {sn}");
        }
    }
}

fn started() -> Client {
    let mut c = client();
    let r = c.transact(&base_ops()).unwrap();
    assert!(r.committed, "{:?}", r.failures);
    assert_agree(&c, "after the first transaction");
    c
}

#[test]
fn a_transaction_the_kernel_already_holds_sends_nothing_and_is_committed() {
    let mut c = started();
    let batches = c.kernel().batches;
    let r = c
        .transact(&ops(serde_json::json!([
            { "op": "members", "family": "inet", "table": T, "set": "g4", "add": ["10.0.1.0/24", "10.0.0.1"], "replace": true },
        ])))
        .unwrap();
    assert!(r.committed && r.failures.is_empty(), "{r:?}");
    assert_eq!(c.kernel().batches, batches, "no batch is sent");
    // A member inside another already held changes nothing in the kernel either.
    let r =
        c.transact(&ops(serde_json::json!([{ "op": "members", "family": "inet", "table": T, "set": "g4", "add": ["10.0.1.7"] }]))).unwrap();
    assert!(r.committed && r.failures.is_empty(), "{r:?}");
    assert_eq!(c.kernel().batches, batches);
    assert_agree(&c, "after the no-op transactions");
    // … and taking it away again neither, while the /24 stays.
    let r =
        c.transact(&ops(serde_json::json!([{ "op": "members", "family": "inet", "table": T, "set": "g4", "del": ["10.0.1.7"] }]))).unwrap();
    assert!(r.committed);
    assert_eq!(c.kernel().batches, batches);
    assert_agree(&c, "after the inner member went");
    let checked =
        c.check(&ops(serde_json::json!([{ "op": "members", "family": "inet", "table": T, "set": "g4", "add": ["10.0.0.1"] }]))).unwrap();
    assert!(!checked.committed && checked.failures.is_empty(), "a check commits nothing: {checked:?}");
}

#[test]
fn a_refused_message_leaves_kernel_and_mirror_as_they_were_wherever_it_is() {
    let messages = {
        let mut c = started();
        let before = c.kernel().batches;
        assert!(c.transact(&change_ops()).unwrap().committed);
        assert_eq!(c.kernel().batches, before + 1);
        // Count the messages of the change by refusing ever later ones until one is past the end.
        (0..64)
            .find(|&k| {
                let mut c = started();
                c.kernel_mut().inject(Fault::Refuse { index: k, errno: libc::ENOENT });
                c.transact(&change_ops()).unwrap().committed
            })
            .expect("the change has fewer than 64 messages")
    };
    assert!(messages >= 6, "the change is several messages ({messages})");
    for k in 0..messages {
        for errno in [libc::ENOENT, libc::EBUSY, libc::ENOMEM] {
            let mut c = started();
            let (kernel, mirror, gen) = (c.kernel().tables.clone(), snapshot(&c.mirror), c.kernel().gen);
            c.kernel_mut().inject(Fault::Refuse { index: k, errno });
            let r = c.transact(&change_ops()).unwrap();
            assert!(!r.committed, "message {k} refused");
            // Later messages that needed the refused one are refused too, as the kernel does.
            assert!(!r.failures.is_empty() && r.failures.iter().all(|f| f.op.is_some()), "the refusals name their operations: {r:?}");
            assert_eq!(c.kernel().tables, kernel, "message {k}, errno {errno}: the kernel is as it was");
            assert_eq!(c.kernel().gen, gen);
            assert_eq!(snapshot(&c.mirror), mirror, "message {k}, errno {errno}: the mirror is as it was");
            // The same transaction goes through afterwards.
            assert!(c.transact(&change_ops()).unwrap().committed);
            assert_agree(&c, &format!("retry after message {k} was refused"));
        }
    }
}

#[test]
fn a_failed_commit_changes_nothing() {
    let mut c = started();
    let (kernel, mirror) = (c.kernel().tables.clone(), snapshot(&c.mirror));
    c.kernel_mut().inject(Fault::CommitFails(libc::EBUSY));
    let r = c.transact(&change_ops()).unwrap();
    assert!(!r.committed);
    assert_eq!(r.failures.len(), 1);
    assert_eq!(r.failures[0].op, None, "the transaction as a whole");
    assert_eq!(r.failures[0].code, "BUSY");
    assert_eq!(c.kernel().tables, kernel);
    assert_eq!(snapshot(&c.mirror), mirror);
}

#[test]
fn a_batch_the_kernel_committed_but_whose_answer_was_lost_is_put_back_before_anything_else() {
    for fault in [Fault::CommittedThenIoError, Fault::CommittedAnswerLost] {
        let mut c = started();
        let (kernel, mirror) = (c.kernel().tables.clone(), snapshot(&c.mirror));
        c.kernel_mut().inject(fault.clone());
        let r = c.transact(&change_ops());
        match &r {
            Err(_) => assert_eq!(fault, Fault::CommittedThenIoError),
            Ok(t) => {
                assert!(!t.committed, "{fault:?}: not reported as committed");
                assert_eq!(t.failures.len(), 1);
            }
        }
        // The kernel did commit; the client could not know, so it read its tables back and put them
        // back as the mirror (the state before) says.
        assert_eq!(snapshot(&c.mirror), mirror, "{fault:?}: the mirror is the state before");
        assert_eq!(c.kernel().tables, kernel, "{fault:?}: the kernel was put back to it");
        // The retry makes the change once: no rule twice, no element left over.
        assert!(c.transact(&change_ops()).unwrap().committed);
        assert_agree(&c, &format!("{fault:?}: after the retry"));
        assert_eq!(
            c.kernel().table(NFPROTO_INET, T).unwrap().chains["port-a"].rules.len(),
            1,
            "{fault:?}: the rewritten chain holds one rule"
        );
    }
}

#[test]
fn when_the_answer_is_lost_and_the_kernel_cannot_be_read_the_next_transaction_puts_it_back_first() {
    let mut c = started();
    let kernel = c.kernel().tables.clone();
    c.kernel_mut().inject(Fault::CommittedThenIoError);
    c.kernel_mut().inject(Fault::ReadFails);
    assert!(c.transact(&change_ops()).is_err());
    assert_ne!(c.kernel().tables, kernel, "the kernel holds the change the client does not know of");
    // The next transaction first compares everything and puts the kernel back, then applies itself.
    assert!(c.transact(&change_ops()).unwrap().committed);
    assert_agree(&c, "after the next transaction");
    assert_eq!(c.kernel().table(NFPROTO_INET, T).unwrap().chains["port-b"].rules.len(), 1);
}

#[test]
fn a_batch_that_could_not_be_sent_changes_nothing() {
    let mut c = started();
    let (kernel, mirror) = (c.kernel().tables.clone(), snapshot(&c.mirror));
    c.kernel_mut().inject(Fault::SendFails);
    assert!(c.transact(&change_ops()).is_err());
    assert_eq!(c.kernel().tables, kernel);
    assert_eq!(snapshot(&c.mirror), mirror);
    assert!(c.transact(&change_ops()).unwrap().committed);
    assert_agree(&c, "after the retry");
}

#[test]
fn a_check_changes_neither_kernel_nor_mirror() {
    let mut c = started();
    let (kernel, mirror) = (c.kernel().tables.clone(), snapshot(&c.mirror));
    let r = c.check(&change_ops()).unwrap();
    assert!(!r.committed && r.failures.is_empty(), "{r:?}");
    let bad = ops(serde_json::json!([{ "op": "delChain", "family": "inet", "table": T, "chain": "port-a" }]));
    let r = c.check(&bad).unwrap();
    assert_eq!(r.failures.len(), 1, "a chain still jumped to cannot go: {r:?}");
    assert_eq!(r.failures[0].code, "BUSY");
    assert_eq!(c.kernel().tables, kernel);
    assert_eq!(snapshot(&c.mirror), mirror);
}

fn elem(addr: [u8; 4], flags: u32) -> ElemKey {
    (addr.to_vec(), flags)
}

#[test]
fn foreign_changes_are_found_once_the_generation_moves_and_put_back() {
    let mut c = started();
    c.reconcile(&Scope::default()).unwrap();
    let quiet = c.reconcile(&Scope { quick: true, ..Scope::default() }).unwrap();
    assert!(!quiet.checked, "nothing moved: nothing read");
    let key = (NFPROTO_INET, T.to_string());
    c.kernel_mut().foreign(|t| {
        let t = t.get_mut(&key).unwrap();
        t.chains.get_mut("port-a").unwrap().rules.pop();
        let g4 = t.sets.get_mut("g4").unwrap();
        g4.elems.insert(elem([10, 9, 9, 9], 0), None);
        g4.elems.insert(elem([10, 9, 9, 10], NFT_SET_ELEM_INTERVAL_END), None);
        t.chains.remove("port-a").unwrap();
        t.sets.get_mut("to").unwrap().elems.clear();
    });
    let r = c.reconcile(&Scope { quick: true, ..Scope::default() }).unwrap();
    assert!(r.checked && r.failures.is_empty(), "{r:?}");
    assert_eq!(r.chains_repaired, 1, "{r:?}");
    assert_eq!(r.sets_repaired, 2, "the counts moved, so the sets were read: {r:?}");
    assert_agree(&c, "after the repair");
    // A table removed whole is made again.
    c.kernel_mut().foreign(|t| {
        t.remove(&key);
    });
    let r = c.reconcile(&Scope { quick: true, ..Scope::default() }).unwrap();
    assert_eq!(r.tables_rebuilt, 1);
    assert_agree(&c, "after the rebuild");
}

#[test]
fn an_element_swapped_for_a_foreign_one_is_found_by_a_full_compare() {
    let mut c = started();
    let key = (NFPROTO_INET, T.to_string());
    c.kernel_mut().foreign(|t| {
        let s = t.get_mut(&key).unwrap().sets.get_mut("g4").unwrap();
        s.elems.remove(&elem([10, 0, 0, 1], 0));
        s.elems.insert(elem([10, 9, 9, 9], 0), None);
    });
    // Counted, the set looks whole; compared, it is not.
    let counted = c.reconcile(&Scope { quick: true, ..Scope::default() }).unwrap();
    assert_eq!(counted.sets_repaired, 0);
    let r = c.reconcile(&Scope { all_elements: true, ..Scope::default() }).unwrap();
    assert_eq!(r.sets_repaired, 1);
    assert_eq!((r.elements_added, r.elements_removed), (1, 1));
    assert_agree(&c, "after the compare");
}

#[test]
fn a_refused_repair_is_reported_and_the_next_one_succeeds() {
    let mut c = started();
    let key = (NFPROTO_INET, T.to_string());
    c.kernel_mut().foreign(|t| {
        t.get_mut(&key).unwrap().chains.get_mut("port-a").unwrap().rules.clear();
    });
    let foreign = c.kernel().tables.clone();
    c.kernel_mut().inject(Fault::Refuse { index: 0, errno: libc::EBUSY });
    let r = c.reconcile(&Scope::default()).unwrap();
    assert_eq!(r.failures.len(), 1);
    assert_eq!(c.kernel().tables, foreign, "a refused repair changes nothing");
    let r = c.reconcile(&Scope::default()).unwrap();
    assert!(r.failures.is_empty() && r.chains_repaired == 1, "{r:?}");
    assert_agree(&c, "after the second repair");
}

#[test]
fn objects_of_others_in_our_table_are_reported_not_touched() {
    let mut c = started();
    let key = (NFPROTO_INET, T.to_string());
    c.kernel_mut().foreign(|t| {
        let t = t.get_mut(&key).unwrap();
        t.chains.insert("theirs".into(), super::model::ModelChain { hook: None, ty: None, policy: None, rules: vec![] });
    });
    let r = c.reconcile(&Scope::default()).unwrap();
    assert_eq!(r.unknown.len(), 1);
    assert_eq!(r.unknown[0].name, "theirs");
    assert!(c.kernel().table(NFPROTO_INET, T).unwrap().chains.contains_key("theirs"));
}

#[test]
fn removing_a_port_and_its_set_undoes_cleanly_when_refused() {
    let mut c = started();
    let remove = ops(serde_json::json!([
        { "op": "elems", "family": "inet", "table": T, "set": "to", "del": ["tap-a"] },
        { "op": "flushChain", "family": "inet", "table": T, "chain": "port-a" },
        { "op": "delChain", "family": "inet", "table": T, "chain": "port-a" },
        { "op": "delSet", "family": "inet", "table": T, "set": "g4" },
    ]));
    for k in 0..4 {
        let mut c2 = started();
        let mirror = snapshot(&c2.mirror);
        c2.kernel_mut().inject(Fault::Refuse { index: k, errno: libc::EBUSY });
        assert!(!c2.transact(&remove).unwrap().committed);
        assert_eq!(snapshot(&c2.mirror), mirror, "refused at {k}");
        assert_agree(&c2, &format!("refused at {k}"));
    }
    assert!(c.transact(&remove).unwrap().committed);
    assert_agree(&c, "after the removal");
    assert!(c.mirror_targets_exist());
}

#[test]
fn a_quick_reconcile_after_our_own_commits_reads_nothing_but_one_after_a_foreign_commit_compares() {
    let mut c = started();
    assert!(c.reconcile(&Scope::default()).unwrap().checked);
    assert!(c.transact(&change_ops()).unwrap().committed);
    let r = c.reconcile(&Scope { quick: true, ..Scope::default() }).unwrap();
    assert!(!r.checked, "our own commit moved the generation by one: nothing to compare");
    // Someone else commits, then we do: the generation is two past; the next quick check compares.
    let key = (NFPROTO_INET, T.to_string());
    c.kernel_mut().foreign(|t| {
        t.get_mut(&key).unwrap().sets.get_mut("g4").unwrap().elems.clear();
    });
    let more = ops(serde_json::json!([{ "op": "members", "family": "inet", "table": T, "set": "g4", "add": ["10.0.0.3"] }]));
    assert!(c.transact(&more).unwrap().committed);
    let r = c.reconcile(&Scope { quick: true, all_elements: true, ..Scope::default() }).unwrap();
    assert!(r.checked && r.sets_repaired == 1, "{r:?}");
    assert_agree(&c, "after the foreign change was found");
}

/// Our table as `started` leaves it, with another program's chain `fw-x` in it, then `more` done to it.
fn started_with_foreign_chain(more: impl FnOnce(&mut ModelTable)) -> Client {
    let mut c = started();
    let key = (NFPROTO_INET, T.to_string());
    c.kernel_mut().foreign(|t| {
        let table = t.get_mut(&key).unwrap();
        let chain = table.chains["port-a"].clone();
        table.chains.insert("fw-x".into(), chain);
        more(table);
    });
    c
}

#[test]
fn a_batch_of_unknown_outcome_never_removes_a_table_it_did_not_know_was_there() {
    // A previous run's table, with another program's chain in it, and a client that knows nothing of
    // it (a new run): its first batch "makes" the table, and that batch's outcome is not known.
    let mut c = started_with_foreign_chain(|_| {});
    c.forget(Family::Inet, T);
    let before = c.kernel().tables.clone();
    c.kernel_mut().inject(Fault::SendFails);
    assert!(c.transact(&base_ops()).is_err());
    assert_eq!(c.kernel().tables, before, "the table, still filtering, and the other program's chain stay");
}

#[test]
fn a_table_changed_in_shape_is_not_rebuilt_while_another_program_s_objects_are_in_it() {
    // Our base chain made a regular one: repairing it means rebuilding the table.
    let mut c = started_with_foreign_chain(|table| table.chains.get_mut("fwd").unwrap().hook = None);
    let key = (NFPROTO_INET, T.to_string());
    // A full compare, and a repair of what a notification named (the watch's): the same answer.
    let named = Scope { chains: Some([(Family::Inet, T.to_string(), "fwd".to_string())].into_iter().collect()), ..Scope::default() };
    for scope in [Scope::default(), named] {
        let r = c.reconcile(&scope).unwrap();
        assert_eq!(r.tables_rebuilt, 0, "{r:?}");
        assert_eq!(r.failures.iter().map(|f| f.code).collect::<Vec<_>>(), ["FOREIGN"], "{r:?}");
        assert!(r.unknown.iter().any(|u| u.name == "fw-x"), "{r:?}");
        assert!(c.kernel().tables[&key].chains.contains_key("fw-x"), "the other program's chain stays");
    }
    // Once it is gone, the table is rebuilt as the mirror says.
    c.kernel_mut().foreign(|t| {
        t.get_mut(&key).unwrap().chains.remove("fw-x");
    });
    let r = c.reconcile(&Scope::default()).unwrap();
    assert_eq!(r.tables_rebuilt, 1, "{r:?}");
    assert_agree(&c, "after the rebuild");
}

#[test]
fn a_table_changed_in_shape_is_not_rebuilt_while_another_program_s_flowtable_or_named_object_is_in_it() {
    // Not a chain or set: only the table's use count tells it is there.
    let mut c = started();
    let key = (NFPROTO_INET, T.to_string());
    c.kernel_mut().foreign(|t| {
        let table = t.get_mut(&key).unwrap();
        table.chains.get_mut("fwd").unwrap().hook = None;
        table.others = 1;
    });
    let r = c.reconcile(&Scope::default()).unwrap();
    assert_eq!((r.tables_rebuilt, r.failures.iter().map(|f| f.code).collect::<Vec<_>>()), (0, vec!["FOREIGN"]), "{r:?}");
    assert_eq!(c.kernel().tables[&key].others, 1, "the other program's object stays");
}

#[test]
fn describe_counts_what_is_not_a_chain_or_set_and_a_transaction_at_its_generation_fails_once_anything_moved() {
    let mut c = started();
    let key = (NFPROTO_INET, T.to_string());
    let del = ops(serde_json::json!([{ "op": "delTable", "family": "inet", "table": T }]));
    let d = c.describe(Family::Inet, T).unwrap().expect("our table");
    assert_eq!(d.others, 0, "{d:?}");
    // Another program adds a named counter after the read: the delete decided from it is refused.
    c.kernel_mut().foreign(|t| t.get_mut(&key).unwrap().others = 1);
    let r = c.transact_at(&del, d.generation).unwrap();
    assert!(!r.committed && r.failures.iter().map(|f| f.code).eq(["RETRY"]), "{r:?}");
    assert_eq!(c.kernel().tables[&key].others, 1, "nothing changed");
    assert_agree(&c, "after the refused delete");
    // Read again, the object is seen.
    let d = c.describe(Family::Inet, T).unwrap().expect("our table");
    assert_eq!(d.others, 1, "{d:?}");
    // With nothing moved since the read, the transaction goes in.
    c.kernel_mut().foreign(|t| t.get_mut(&key).unwrap().others = 0);
    let d = c.describe(Family::Inet, T).unwrap().expect("our table");
    assert!(c.transact_at(&del, d.generation).unwrap().committed);
    assert!(!c.kernel().tables.contains_key(&key));
}
