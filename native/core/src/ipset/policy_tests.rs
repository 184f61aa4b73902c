//! The sync policy against the kernel model, with a failure injected at every change of every path
//! in turn: a failed sync leaves the kernel and the mirror as they were (or, when even the undo
//! failed, a mirror that no longer trusts itself), and a retry then succeeds. The same paths run
//! against the real kernel in test/ipset*.test.ts.

use super::client::{IpsetClient, SyncStrategy};
use super::error::ErrorCode;
use super::kernel::IpsetKernel;
use super::member::{Family, Member, SetSpec, SetType};
use super::model::{Model, ModelSet};
use super::name::temp_set_name;
use super::packed::pack_texts;

fn spec(set_type: SetType, maxelem: u32) -> SetSpec {
    SetSpec { set_type, family: Family::Inet, hashsize: None, maxelem: Some(maxelem), timeout: None, comment: false }
}
fn net(maxelem: u32) -> SetSpec {
    spec(SetType::HashNet, maxelem)
}
fn ips(from: u32, n: u32) -> Vec<String> {
    (from..from + n).map(|i| format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)).collect()
}
fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort_by_key(|t| Member::parse(t).unwrap());
    v
}

type Client = IpsetClient<Model>;

/// Runs `step` once per change it makes, failing that change; checks that each failed run left the
/// kernel as it was and that the set's members can be synced afterwards. Returns how many failure
/// points there were.
fn at_every_failure_point(setup: impl Fn() -> Client, step: impl Fn(&mut Client) -> bool, name: &str, want: &[String]) -> usize {
    let clean = {
        let mut c = setup();
        c.kernel_mut().fail(&[]);
        assert!(step(&mut c), "the step succeeds without failures");
        assert_eq!(c.kernel().members(name).unwrap(), sorted(want.to_vec()));
        c.kernel().changes
    };
    for k in 1..=clean {
        let mut c = setup();
        let before = c.kernel().sets.clone();
        let mirrored = c.mirrored_len(name);
        c.kernel_mut().fail(&[k]);
        if step(&mut c) {
            // Only the clean-up of the old contents may fail without failing the step: the temp set
            // is then left, to be removed by the next sync of the set.
            assert_eq!(c.kernel().members(name).unwrap(), sorted(want.to_vec()), "failure at change {k}");
            let mut others = c.kernel().sets.clone();
            others.remove(name);
            others.remove(&temp_set_name(name));
            others.remove(&temp_set_name(&temp_set_name(name)));
            let mut before_others = before.clone();
            before_others.remove(name);
            assert_eq!(others, before_others, "failure at change {k}");
            continue;
        }
        assert_eq!(c.kernel().sets, before, "failure at change {k}: the kernel must be as it was");
        assert_eq!(c.mirrored_len(name), mirrored, "failure at change {k}: the mirror must be as it was");
        assert!(step(&mut c), "retry after a failure at change {k}");
        assert_eq!(c.kernel().members(name).unwrap(), sorted(want.to_vec()));
        assert!(!c.kernel().sets.contains_key(&temp_set_name(name)), "no temp set left after failure {k}");
    }
    clean
}

fn synced(name: &str, s: &SetSpec, members: &[String]) -> Client {
    let mut c = IpsetClient::with_kernel(Model::default());
    c.sync_set(name, s, members).unwrap();
    c
}

fn sync_step(name: &'static str, s: SetSpec, members: Vec<String>, strategy: SyncStrategy) -> impl Fn(&mut Client) -> bool {
    move |c| c.sync_set_packed(name, &s, &pack_texts(&members), strategy).is_ok()
}

#[test]
fn creating_and_filling_a_set_is_all_or_nothing() {
    let want = ips(0, 40);
    let n = at_every_failure_point(
        || IpsetClient::with_kernel(Model::default()),
        sync_step("s", net(1000), want.clone(), SyncStrategy::Auto),
        "s",
        &want,
    );
    assert_eq!(n, 41, "create and 40 adds");
}

#[test]
fn an_in_place_change_that_fails_is_undone() {
    let old = ips(0, 100);
    let want: Vec<String> = ips(10, 90).into_iter().chain(ips(1000, 10)).collect();
    let n = at_every_failure_point(
        || synced("s", &net(1000), &old),
        sync_step("s", net(1000), want.clone(), SyncStrategy::InPlace),
        "s",
        &want,
    );
    assert_eq!(n, 20);
}

#[test]
fn a_replace_never_swaps_in_a_partly_filled_set() {
    let old = ips(0, 300);
    let want = ips(5000, 300);
    // Large change: temp set, fill, swap, destroy.
    at_every_failure_point(|| synced("s", &net(1000), &old), sync_step("s", net(1000), want.clone(), SyncStrategy::Auto), "s", &want);
    // Another maxelem: the same path for a small change.
    at_every_failure_point(|| synced("s", &net(1000), &old), sync_step("s", net(2000), old.clone(), SyncStrategy::Auto), "s", &old);
}

#[test]
fn a_type_change_replaces_the_set_by_name_all_or_nothing() {
    let old = ips(0, 20);
    at_every_failure_point(
        || synced("s", &net(1000), &old),
        sync_step("s", spec(SetType::HashIp, 1000), old.clone(), SyncStrategy::Auto),
        "s",
        &old,
    );
}

#[test]
fn a_type_change_of_a_set_in_use_is_refused_and_changes_nothing() {
    let old = ips(0, 20);
    let mut c = synced("s", &net(1000), &old);
    c.kernel_mut().sets.get_mut("s").unwrap().refs = 1;
    let before = c.kernel().sets.clone();
    let e = c.sync_set("s", &spec(SetType::HashIp, 1000), &ips(50, 3)).unwrap_err();
    assert_eq!(e.code, ErrorCode::TypeMismatch);
    assert!(e.message.contains("in use"), "{e}");
    assert_eq!(c.kernel().sets, before);
}

#[test]
fn when_even_the_undo_fails_the_mirror_stops_trusting_itself() {
    let old = ips(0, 100);
    let want: Vec<String> = ips(10, 90).into_iter().chain(ips(1000, 10)).collect();
    // Change 15 is the 5th add (after 10 deletes); changes 16.. are the undo: fail one of those too.
    for undo in 16..=30 {
        let mut c = synced("s", &net(1000), &old);
        c.kernel_mut().fail(&[15, undo]);
        assert!(c.sync_set_packed("s", &net(1000), &pack_texts(&want), SyncStrategy::InPlace).is_err());
        // The kernel is neither here nor there; the next sync reads it and gets it right.
        let r = c.sync_set("s", &net(1000), &want).unwrap();
        assert!(r.added + r.removed > 0, "undo failure at {undo}: {r:?}");
        assert_eq!(c.kernel().members("s").unwrap(), sorted(want.clone()));
    }
}

#[test]
fn validation_refuses_before_any_change() {
    let old = ips(0, 10);
    let mut c = synced("s", &spec(SetType::HashIp, 20), &old);
    let before = c.kernel().sets.clone();
    c.kernel_mut().fail(&[]);
    for (bad, code) in [
        (vec!["10.0.0.1", "0.0.0.0"], ErrorCode::InvalidMember),
        (vec!["10.0.0.1", "10.0.0.0/24"], ErrorCode::InvalidMember),
        (vec!["fd00::1"], ErrorCode::InvalidMember),
        (vec!["10.0.0.1/032"], ErrorCode::InvalidMember),
    ] {
        let e = c.sync_set("s", &spec(SetType::HashIp, 20), &bad).unwrap_err();
        assert_eq!((e.code, e.member.as_deref()), (code, bad.last().copied()), "{e}");
    }
    let e = c.sync_set("s", &spec(SetType::HashIp, 20), &ips(0, 21)).unwrap_err();
    assert_eq!(e.code, ErrorCode::SetFull);
    assert_eq!(c.kernel().changes, 0, "nothing was sent for the refused lists");
    // Duplicates count once against maxelem.
    let twice: Vec<String> = ips(0, 20).into_iter().chain(ips(0, 20)).collect();
    c.sync_set("s", &spec(SetType::HashIp, 20), &twice).unwrap();
    c.sync_set("s", &spec(SetType::HashIp, 20), &old).unwrap();
    assert_eq!(c.kernel().sets, before);
    for bad in ["s.t", "-s"] {
        assert_eq!(c.sync_set(bad, &net(10), &old).unwrap_err().code, ErrorCode::InvalidName, "{bad}");
    }
}

#[test]
fn a_stale_mirror_of_a_destroyed_set_recreates_it() {
    let old = ips(0, 10);
    let mut c = synced("s", &net(1000), &old);
    c.kernel_mut().sets.remove("s");
    let r = c.sync_set("s", &net(1000), &ips(0, 11)).unwrap();
    assert!(r.created);
    assert_eq!(c.kernel().members("s").unwrap(), sorted(ips(0, 11)));
}

#[test]
fn reconcile_repairs_and_reports_every_kind_of_drift() {
    let mut c = synced("s", &net(1000), &ips(0, 10));
    c.kernel_mut().sets.get_mut("s").unwrap().members.clear();
    let r = c.reconcile("s").unwrap();
    assert_eq!((r.added, r.removed, r.repaired), (10, 0, true));
    assert!(!c.reconcile("s").unwrap().repaired);
    // An empty set destroyed behind our back: recreated, and that is a repair.
    let mut c = synced("e", &net(1000), &[]);
    c.kernel_mut().sets.remove("e");
    assert!(c.reconcile("e").unwrap().repaired);
    assert!(c.kernel().sets.contains_key("e"));
    // A set whose contents are not members any more: replaced.
    c.kernel_mut().sets.get_mut("e").unwrap().foreign_entry = true;
    assert!(c.reconcile("e").unwrap().repaired);
    assert!(!c.kernel().sets["e"].foreign_entry);
}

#[test]
fn a_failed_reconcile_leaves_the_kernel_as_it_was_and_tries_again_next_time() {
    let want = ips(0, 10);
    let drifted = |c: &mut Client| {
        let s = c.kernel_mut().sets.get_mut("s").unwrap();
        for m in ips(0, 3) {
            s.members.remove(&Member::parse(&m).unwrap());
        }
    };
    for k in 1..=3 {
        let mut c = synced("s", &net(1000), &want);
        drifted(&mut c);
        let before = c.kernel().sets.clone();
        c.kernel_mut().fail(&[k]);
        assert!(c.reconcile("s").is_err());
        assert_eq!(c.kernel().sets, before);
        assert!(c.reconcile("s").unwrap().repaired);
        assert_eq!(c.kernel().members("s").unwrap(), sorted(want.clone()));
    }
}

#[test]
fn a_stale_temp_set_is_removed_before_use_and_no_other_set_is_touched() {
    let old = ips(0, 300);
    let mut c = synced("s", &net(1000), &old);
    let copy = c.kernel().sets["s"].clone();
    c.kernel_mut().sets.insert("s.t".into(), copy.clone());
    c.kernel_mut().sets.insert("sgtmp-0123456789abcdef".into(), copy);
    c.sync_set("s", &net(1000), &ips(9000, 300)).unwrap();
    let names: Vec<&String> = c.kernel().sets.keys().collect();
    assert_eq!(names, ["s", "sgtmp-0123456789abcdef"]);
}

#[test]
fn create_with_exist_over_another_family_or_type_is_a_type_mismatch() {
    let mut c = synced("s", &net(1000), &ips(0, 3));
    let v6 = SetSpec { family: Family::Inet6, ..net(1000) };
    assert_eq!(c.create("s", &v6, true).unwrap_err().code, ErrorCode::TypeMismatch);
    assert_eq!(c.create("s", &spec(SetType::HashIp, 1000), true).unwrap_err().code, ErrorCode::TypeMismatch);
    assert_eq!(c.create("s", &net(5), true).unwrap_err().code, ErrorCode::SetExists);
    c.create("s", &net(1000), true).unwrap();
    assert_eq!(c.kernel().members("s").unwrap().len(), 3);
}

#[test]
fn full_syncs_by_chunks_agree_with_the_set_difference() {
    // Lists edited the way a member list changes between full syncs (members dropped anywhere, new
    // ones inserted or appended, duplicates now and then), with adds and deletes in between; after
    // every step the kernel holds exactly what it should and a sync reports exactly the difference.
    use std::collections::BTreeSet;
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let s = net(1 << 20);
    let mut c = IpsetClient::with_kernel(Model::default());
    let mut list: Vec<u32> = (0..5_000).collect();
    let text = |l: &[u32]| l.iter().map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)).collect::<Vec<_>>();
    let mut held: BTreeSet<u32> = BTreeSet::new();
    let mut next = 1_000_000u32;
    for round in 0..300 {
        match rnd(10) {
            0 => {
                // A delta between full syncs.
                let k = (rnd(5_000) as u32, next);
                next += 1;
                if rnd(2) == 0 {
                    c.add("s", &text(&[k.1]), true).unwrap();
                    held.insert(k.1);
                } else {
                    c.del("s", &text(&[k.0]), true).unwrap();
                    held.remove(&k.0);
                }
            }
            _ => {
                for _ in 0..rnd(40) {
                    if !list.is_empty() {
                        list.remove(rnd(list.len() as u64) as usize);
                    }
                }
                for _ in 0..rnd(40) {
                    let at = if rnd(2) == 0 { list.len() } else { rnd(list.len() as u64 + 1) as usize };
                    list.insert(at, next);
                    next += 1;
                }
                if rnd(8) == 0 && !list.is_empty() {
                    let dup = list[rnd(list.len() as u64) as usize];
                    list.push(dup);
                }
                let want: BTreeSet<u32> = list.iter().copied().collect();
                let r = c.sync_set("s", &s, &text(&list)).unwrap();
                if round > 0 {
                    assert_eq!(r.added, want.difference(&held).count(), "round {round}");
                    assert_eq!(r.removed, held.difference(&want).count(), "round {round}");
                }
                held = want;
            }
        }
        let kernel: BTreeSet<String> = c.kernel().members("s").unwrap_or_default().into_iter().collect();
        let expect: BTreeSet<String> = text(&held.iter().copied().collect::<Vec<_>>()).into_iter().collect();
        assert_eq!(kernel, expect, "round {round}");
    }
}

/// The members of `name` replaced behind the client's back by `members`, the set itself kept.
fn edit_behind(c: &mut Client, name: &str, members: &[String]) {
    let s = c.kernel_mut().sets.get_mut(name).unwrap();
    s.members = members.iter().map(|t| Member::parse(t).unwrap()).collect();
}

/// A set as someone else creates and fills it (a fresh initval).
fn made_by_another(c: &mut Client, s: SetSpec, members: &[String]) -> ModelSet {
    ModelSet { members: members.iter().map(|t| Member::parse(t).unwrap()).collect(), ..c.kernel_mut().new_set(s) }
}

#[test]
fn a_sync_after_the_set_moved_behind_the_client_makes_it_hold_the_list() {
    let want = ips(0, 10);
    let others = ips(500, 10);
    // Destroyed, and made again holding as many other members.
    let mut c = synced("s", &net(1000), &want);
    c.sync_set("s", &net(1000), &want).unwrap();
    let again = made_by_another(&mut c, net(1000), &others);
    c.kernel_mut().sets.insert("s".into(), again);
    assert_eq!(c.sync_set("s", &net(1000), &want).unwrap().added, 10);
    assert_eq!(c.kernel().members("s").unwrap(), sorted(want.clone()));
    // Swapped with a set of as many other members.
    let o = made_by_another(&mut c, net(1000), &others);
    c.kernel_mut().sets.insert("o".into(), o);
    c.kernel_mut().swap("s", "o").unwrap();
    c.sync_set("s", &net(1000), &want).unwrap();
    assert_eq!(c.kernel().members("s").unwrap(), sorted(want.clone()));
    // Flushed, or a member deleted by hand: the count moved.
    c.kernel_mut().sets.get_mut("s").unwrap().members.clear();
    assert_eq!(c.sync_set("s", &net(1000), &want).unwrap().added, 10);
    edit_behind(&mut c, "s", &want[1..]);
    assert_eq!(c.sync_set("s", &net(1000), &want).unwrap().added, 1);
    // Destroyed: made again.
    c.kernel_mut().sets.remove("s");
    assert!(c.sync_set("s", &net(1000), &want).unwrap().created);
    assert_eq!(c.kernel().members("s").unwrap(), sorted(want.clone()));
    // A member swapped for another by hand keeps the count and the initval: a sync does not see it
    // (the header cannot tell), a reconcile does.
    let mut edited = want[1..].to_vec();
    edited.push(others[0].clone());
    edit_behind(&mut c, "s", &edited);
    assert_eq!(c.sync_set("s", &net(1000), &want).unwrap().added, 0);
    assert!(c.reconcile("s").unwrap().repaired);
    assert_eq!(c.kernel().members("s").unwrap(), sorted(want));
}

#[test]
fn a_set_made_again_as_another_type_is_never_written_as_the_old_one() {
    let want: Vec<String> = ips(0, 3).into_iter().chain(["10.9.0.0/22".to_string()]).collect();
    let mut c = synced("s", &net(1000), &want);
    let as_ip = made_by_another(&mut c, spec(SetType::HashIp, 1000), &ips(0, 4));
    c.kernel_mut().sets.insert("s".into(), as_ip);
    let before = c.kernel().sets.clone();
    // add and del would send hash:net elements (the kernel would add the /22 as 1,024 addresses).
    let e = c.add("s", &["10.8.0.0/22"], true).unwrap_err();
    assert_eq!(e.code, ErrorCode::TypeMismatch, "{e}");
    assert_eq!(c.del("s", &["10.0.0.1"], true).unwrap_err().code, ErrorCode::TypeMismatch);
    assert_eq!(c.test("s", "10.0.0.1").unwrap_err().code, ErrorCode::TypeMismatch);
    assert_eq!(c.kernel().sets, before, "nothing was written");
    // A sync makes it the set it asks for.
    c.sync_set("s", &net(1000), &want).unwrap();
    assert_eq!(c.kernel().sets["s"].spec.set_type, SetType::HashNet);
    assert_eq!(c.kernel().members("s").unwrap(), sorted(want));
}

#[test]
fn a_set_with_a_timeout_is_read_at_every_sync() {
    let with_timeout = SetSpec { timeout: Some(600), ..net(1000) };
    let want = ips(0, 10);
    let mut c = synced("s", &with_timeout, &want);
    // A member expired and another was added with as many members left: a header cannot tell.
    let mut edited = want[1..].to_vec();
    edited.push(ips(500, 1)[0].clone());
    edit_behind(&mut c, "s", &edited);
    let r = c.sync_set("s", &with_timeout, &want).unwrap();
    assert_eq!((r.added, r.removed), (1, 1));
    assert_eq!(c.kernel().members("s").unwrap(), sorted(want));
}
