//! The sync policy: make a set hold exactly a list, or leave the kernel and the mirror as they were.
//!
//! A sync validates everything before its first change, and a change that fails half-way is undone:
//! acknowledged deletes re-added, acknowledged adds deleted, a set it created destroyed, a temp set
//! never swapped in unless completely filled. A full sync diffs against the mirror instead of
//! re-listing the kernel (listing 100k members costs more than a small diff), and against the last
//! list synced when there is one (`lastlist`), so that it costs O(change) beyond one scan of the list
//! and the kernel's count of the set's members: the mirror is used only once the set's header agrees
//! with it (`prepare_checked`), else the set is read.

use super::client::{already_so, check_name, check_new_name, check_spec, IpsetClient, Managed, ReconcileResult, SyncResult, SyncStrategy};
use super::diff::{prefer_swap, MarkedSet, MemberDiff, MemberSet};
use super::error::{ErrorCode, IpsetError};
use super::kernel::{Adt, AdtReport, IpsetKernel, SetIdentity};
use super::lastlist::{cut, Chunk, Counts, LastList};
use super::member::{Member, SetSpec, SetType};
use super::name::temp_set_name;
use super::packed::{decode_members, pack_texts};
use super::wire::hashsize_for;

/// What the set is now, as far as a sync needs to know.
enum Current {
    Missing,
    /// It exists but must be replaced: another spec, or contents that are not a member list.
    Replace {
        old_len: usize,
    },
    /// It exists with the right spec; `diff` leads from `members` to the desired list. Read from the
    /// kernel (not `from_mirror`), `seen` is the identity its header showed.
    Same {
        members: MarkedSet,
        diff: MemberDiff,
        from_mirror: bool,
        seen: Option<SetIdentity>,
    },
}

/// What went wrong in the middle of a change, and whether the undo put everything back.
struct Failed {
    error: IpsetError,
    clean: bool,
}

/// How many times each member is in `list`.
fn counts(list: &[Member]) -> Counts {
    let mut c = Counts::default();
    for m in list {
        *c.entry(*m).or_insert(0) += 1;
    }
    c
}

/// The members `list` holds more than once, with their counts.
fn duplicates(list: &[Member]) -> Counts {
    let mut c = counts(list);
    c.retain(|_, n| *n > 1);
    c
}

fn spec_sized(spec: &SetSpec, n: usize) -> SetSpec {
    let mut sized = spec.clone();
    // Sized for its contents up front: growing a hash set in the kernel rehashes every member.
    if sized.hashsize.is_none() {
        sized.hashsize = Some(hashsize_for(n));
    }
    sized
}

/// From this many members on, a sync asks for the set's header from a thread of its own while it
/// cuts and compares the list (below, the header costs less than the thread).
const HEADER_WHILE_MIN: usize = 8192;

/// The first failure of a batch that is not "already so", named.
fn first_real_failure(op: Adt, name: &str, batch: &[Member], report: &AdtReport) -> Option<IpsetError> {
    report.failed.iter().find(|(_, e)| !already_so(op, e)).map(|(i, e)| e.clone().set(name).member(batch[*i].to_string()))
}

/// A full sync by chunks planned from the mirror alone: what changes, and the list the next sync
/// compares with (built here, while the set's header is being asked for).
struct ChunkPlan {
    diff: MemberDiff,
    next_last: LastList,
    current_len: usize,
}

/// Plans a full sync in O(change) beyond one scan of the list: when the set holds the last list
/// synced (with the adds and deletes made since), only the chunks of the new list that are not in
/// the last one are decoded and checked, and only their members, the last list's vanished chunks and
/// the adds and deletes since are compared. `None` when this does not apply (no last list, or a
/// change touching most of the list): the full path then does the work.
fn plan_by_chunks(m: &Managed, name: &str, spec: &SetSpec, packed: &[u8], chunks: &[Chunk]) -> Option<Result<ChunkPlan, IpsetError>> {
    let last = m.last.as_ref()?;
    let matched = last.match_chunks(packed, chunks);
    // A change touching most of the list is no cheaper this way: the full path will do.
    let touched: u64 = matched.new_unmatched.iter().map(|&i| chunks[i].records as u64).sum();
    if touched * 2 > chunks.iter().map(|c| c.records as u64).sum::<u64>() {
        return None;
    }
    // What was synced before was checked then, against a spec of the same type and family.
    let mut fresh = Vec::new();
    for &i in &matched.new_unmatched {
        match decode_members(name, Some(spec), &packed[chunks[i].range()]) {
            Ok(v) => fresh.extend(v),
            Err(e) => return Some(Err(e)),
        }
    }
    let mut gone = Vec::new();
    for &i in &matched.old_unmatched {
        gone.extend(decode_members(name, None, &last.bytes()[last.chunk(i).range()]).ok()?);
    }
    let (gone, new) = (counts(&gone), counts(&fresh));
    let held = &m.members;
    // How many times each member is in the last list: what the set holds, less what was added
    // since, plus what was deleted since, once, or as often as `dups` says.
    let in_last = |x: &Member| (held.contains(x) && !last.added.contains(x)) || last.removed.contains(x);
    let count_last = |x: &Member| last.dups.get(x).copied().unwrap_or(in_last(x) as u32);
    // Only members of the chunks that changed, and those added or deleted since, can change.
    let count_new = |x: &Member| count_last(x).saturating_sub(gone.get(x).copied().unwrap_or(0)) + new.get(x).copied().unwrap_or(0);
    let (mut add, mut del) = (Vec::new(), Vec::new());
    let mut dups: Counts =
        last.dups.iter().filter(|(x, _)| !gone.contains_key(*x) && !new.contains_key(*x)).map(|(x, n)| (*x, *n)).collect();
    let mut seen = MemberSet::default();
    for x in gone.keys().chain(new.keys()).chain(last.added.iter()).chain(last.removed.iter()) {
        if !seen.insert(*x) {
            continue;
        }
        let n = count_new(x);
        if n > 1 {
            dups.insert(*x, n);
        }
        match (held.contains(x), n > 0) {
            (false, true) => add.push(*x),
            (true, false) => del.push(*x),
            _ => {}
        }
    }
    add.sort_unstable();
    del.sort_unstable();
    let distinct = held.len() + add.len() - del.len();
    let next_last = LastList::new(packed, chunks.to_vec(), dups);
    Some(Ok(ChunkPlan { diff: MemberDiff { add, del, distinct }, next_last, current_len: held.len() }))
}

impl<K: IpsetKernel> IpsetClient<K> {
    /// Makes `name` hold exactly `texts` (see `sync_set_packed`).
    pub fn sync_set<S: AsRef<str>>(&mut self, name: &str, spec: &SetSpec, texts: &[S]) -> Result<SyncResult, IpsetError> {
        self.sync_set_packed(name, spec, &pack_texts(texts), SyncStrategy::Auto)
    }

    /// Makes `name` hold exactly the members of `packed`, creating it if missing, or leaves the kernel
    /// and the mirror as they were and says which member failed. Small changes are applied in place
    /// (deletes, then adds); a different spec or a change large against the set is built in a temp
    /// set and swapped in, so rules referring to the set never see it half-filled.
    pub fn sync_set_packed(&mut self, name: &str, spec: &SetSpec, packed: &[u8], strategy: SyncStrategy) -> Result<SyncResult, IpsetError> {
        check_new_name(name)?;
        check_spec(name, spec)?;
        let (chunks, plan) = self.prepare_checked(name, spec, packed);
        if let Some(plan) = plan.transpose()? {
            if let Some(done) = self.apply_chunk_plan(name, spec, plan, strategy) {
                return done;
            }
        }
        let desired = decode_members(name, Some(spec), packed)?;
        let max = spec.effective_maxelem() as usize;
        // Duplicates are allowed, so only a list longer than maxelem needs counting.
        if desired.len() > max {
            let distinct = desired.iter().copied().collect::<MemberSet>().len();
            if distinct > max {
                return Err(IpsetError::new(ErrorCode::SetFull, format!("{distinct} members exceed maxelem {max}")).set(name));
            }
        }
        let saved = self.mirror.get_mut(name).and_then(|m| m.last.take());
        let r = self.converge(name, spec, &desired, strategy, false);
        if let Some(m) = self.mirror.get_mut(name) {
            m.last = match (&r, chunks) {
                // The set now holds the list: it becomes the one the next sync compares with.
                (Ok(_), Some(chunks)) => {
                    let dups = if m.members.len() == desired.len() { Counts::default() } else { duplicates(&desired) };
                    Some(LastList::new(packed, chunks, dups))
                }
                (Ok(_), None) => None,
                (Err(_), _) => saved,
            };
        }
        r
    }

    /// Cuts the list and, when the mirror trusts its entry, plans the sync by chunks from it, and
    /// checks the set's header against the mirror (`take_header`): the plan is returned only if the
    /// header agrees. For a large set the header is asked while the list is cut and compared, since
    /// the kernel counts the members for it by walking the whole set (about 1 ms per 100k members);
    /// for a small one, first (a thread costs more than its header). A set with a timeout is never
    /// trusted: its members expire at any time.
    fn prepare_checked(
        &mut self,
        name: &str,
        spec: &SetSpec,
        packed: &[u8],
    ) -> (Option<Vec<Chunk>>, Option<Result<ChunkPlan, IpsetError>>) {
        if let Some(m) = self.mirror.get_mut(name).filter(|m| m.expires()) {
            m.trusted = false;
        }
        let entry = self.mirror.get(name).filter(|m| m.trusted);
        let large = entry.is_some_and(|m| m.members.len() >= HEADER_WHILE_MIN);
        let prepare = || {
            let chunks = cut(packed);
            let plan = match (entry, &chunks) {
                (Some(m), Some(c)) if m.spec.satisfies(spec) => plan_by_chunks(m, name, spec, packed, c),
                _ => None,
            };
            (chunks, plan)
        };
        let (header, (chunks, plan)) = match entry {
            None => return prepare(),
            Some(_) if large => self.kernel.header_while(name, prepare),
            Some(_) => (self.kernel.header(name), prepare()),
        };
        if let Err(e) = self.take_header(name, header) {
            return (chunks, Some(Err(e)));
        }
        let trusted = self.mirror.get(name).is_some_and(|m| m.trusted);
        (chunks, plan.filter(|_| trusted))
    }

    /// Applies a plan made by `plan_by_chunks` in place; `None` when the change is one for a swap, or
    /// the set went behind our back (the full path then does the work).
    fn apply_chunk_plan(
        &mut self,
        name: &str,
        spec: &SetSpec,
        plan: ChunkPlan,
        strategy: SyncStrategy,
    ) -> Option<Result<SyncResult, IpsetError>> {
        let ChunkPlan { diff, next_last, current_len } = plan;
        let max = spec.effective_maxelem() as usize;
        if diff.distinct > max {
            return Some(Err(IpsetError::new(ErrorCode::SetFull, format!("{} members exceed maxelem {max}", diff.distinct)).set(name)));
        }
        let swap = match strategy {
            SyncStrategy::Auto => prefer_swap(current_len, diff.distinct, diff.changes()),
            SyncStrategy::InPlace => false,
            SyncStrategy::Swap => true,
        };
        if swap && !diff.is_empty() {
            return None;
        }
        let done = if diff.is_empty() { Ok((0, 0)) } else { self.in_place(name, spec.set_type, &diff) };
        match done {
            Ok((added, removed)) => {
                let m = self.mirror.get_mut(name).expect("the entry the diff came from");
                m.members.apply(&diff.add, &diff.del);
                m.last = Some(next_last);
                Some(Ok(SyncResult { created: false, added, removed, swapped: false }))
            }
            // The set went behind our back: the full path reads the kernel and makes it again.
            Err(Failed { error, clean: true }) if error.code == ErrorCode::SetNotFound => {
                self.distrust(name);
                None
            }
            Err(Failed { error, clean }) => {
                if !clean {
                    self.distrust(name);
                }
                Some(Err(error))
            }
        }
    }

    /// Re-reads the kernel and makes the set hold what the mirror says it should, repairing drift
    /// (a flushed set, a member removed by hand, a set destroyed or replaced).
    pub fn reconcile(&mut self, name: &str) -> Result<ReconcileResult, IpsetError> {
        check_name(name)?;
        let Some(m) = self.mirror.get(name) else {
            return Err(IpsetError::new(ErrorCode::SetNotFound, "the set is not managed by this client").set(name));
        };
        let spec = m.spec.clone();
        let target: Vec<Member> = m.members.iter().collect();
        // The set is brought back to what it held, so the last list still describes it.
        let last = self.mirror.get_mut(name).and_then(|m| m.last.take());
        let r = self.converge(name, &spec, &target, SyncStrategy::Auto, true);
        if let Some(m) = self.mirror.get_mut(name) {
            m.last = last;
        }
        match r {
            Ok(r) => Ok(ReconcileResult { added: r.added, removed: r.removed, repaired: r.changed() }),
            Err(e) => {
                // The kernel is as it was, which is not what the mirror says.
                self.distrust(name);
                Err(e)
            }
        }
    }

    fn converge(
        &mut self,
        name: &str,
        spec: &SetSpec,
        desired: &[Member],
        strategy: SyncStrategy,
        read_kernel: bool,
    ) -> Result<SyncResult, IpsetError> {
        let mut read_kernel = read_kernel;
        loop {
            let current = self.current(name, spec, desired, read_kernel)?;
            let from_mirror = matches!(current, Current::Same { from_mirror: true, .. });
            match self.apply(name, spec, desired, strategy, current) {
                // The mirror was stale (the set went behind our back) and nothing was changed: read
                // the kernel and start again, once.
                Err(Failed { error, clean: true }) if from_mirror && error.code == ErrorCode::SetNotFound => {
                    self.distrust(name);
                    read_kernel = true;
                }
                Err(Failed { error, clean }) => {
                    if !clean {
                        self.distrust(name);
                    }
                    return Err(error);
                }
                Ok(r) => return Ok(r),
            }
        }
    }

    /// Where the set stands against `desired`: from the mirror when it is trusted, else read.
    fn current(&mut self, name: &str, spec: &SetSpec, desired: &[Member], read_kernel: bool) -> Result<Current, IpsetError> {
        if !read_kernel {
            if let Some(m) = self.mirror.get_mut(name).filter(|m| m.trusted) {
                if !m.spec.satisfies(spec) {
                    return Ok(Current::Replace { old_len: m.members.len() });
                }
                let diff = m.members.diff_to(desired);
                return Ok(Current::Same { members: MarkedSet::default(), diff, from_mirror: true, seen: None });
            }
        }
        match self.kernel.read(name) {
            Err(e) if e.code == ErrorCode::SetNotFound => Ok(Current::Missing),
            Err(e) => Err(e.set(name)),
            Ok(k) if k.unrepresentable.is_some() || !k.header.satisfies(spec) => {
                Ok(Current::Replace { old_len: k.header.entries.unwrap_or(0) as usize })
            }
            Ok(k) => {
                let seen = Some(k.header.identity());
                let mut members: MarkedSet = k.members.into_iter().collect();
                let diff = members.diff_to(desired);
                Ok(Current::Same { members, diff, from_mirror: false, seen })
            }
        }
    }

    fn apply(
        &mut self,
        name: &str,
        spec: &SetSpec,
        desired: &[Member],
        strategy: SyncStrategy,
        current: Current,
    ) -> Result<SyncResult, Failed> {
        match current {
            Current::Missing => self.create_filled(name, spec, desired),
            Current::Replace { old_len } => self.replace(name, spec, desired, old_len),
            Current::Same { mut members, diff, from_mirror, seen } => {
                let old_len = if from_mirror { self.mirror.get(name).map_or(0, |m| m.members.len()) } else { members.len() };
                let swap = match strategy {
                    SyncStrategy::Auto => prefer_swap(old_len, diff.distinct, diff.changes()),
                    SyncStrategy::InPlace => false,
                    SyncStrategy::Swap => true,
                };
                if swap && !diff.is_empty() {
                    return self.replace(name, spec, desired, old_len);
                }
                let (added, removed) = self.in_place(name, spec.set_type, &diff)?;
                if from_mirror {
                    let m = self.mirror.get_mut(name).expect("the mirror entry a diff came from");
                    m.members.apply(&diff.add, &diff.del);
                } else {
                    members.apply(&diff.add, &diff.del);
                    self.mirror.insert(name.into(), Managed::new(spec.clone(), members, seen));
                }
                Ok(SyncResult { created: false, added, removed, swapped: false })
            }
        }
    }

    /// Creates the set and fills it; if the fill fails, the set goes again.
    fn create_filled(&mut self, name: &str, spec: &SetSpec, desired: &[Member]) -> Result<SyncResult, Failed> {
        let members: MarkedSet = desired.iter().copied().collect();
        let list: Vec<Member> = members.iter().collect();
        self.kernel.create(name, &spec_sized(spec, list.len()), false).map_err(|e| Failed { error: e.set(name), clean: true })?;
        if let Err(error) = self.fill(name, spec.set_type, &list) {
            let clean = self.kernel.destroy(name).is_ok();
            return Err(Failed { error, clean });
        }
        let identity = self.identify(name, spec, list.len());
        self.mirror.insert(name.into(), Managed::new(spec.clone(), members, identity));
        Ok(SyncResult { created: true, added: list.len(), removed: 0, swapped: false })
    }

    /// Adds every member to a fresh set; the error names the first member the kernel refused.
    fn fill(&mut self, set: &str, set_type: SetType, list: &[Member]) -> Result<(), IpsetError> {
        let report = self.kernel.adt(Adt::Add, set, set_type, list, true).map_err(|e| e.set(set))?;
        match report.failed.first() {
            None => Ok(()),
            Some((i, e)) => Err(e.clone().set(set).member(list[*i].to_string())),
        }
    }

    /// Builds the desired set under the temp name and swaps it in; the temp set is destroyed
    /// whatever happens, and swapped in only when completely filled.
    fn replace(&mut self, name: &str, spec: &SetSpec, desired: &[Member], old_len: usize) -> Result<SyncResult, Failed> {
        let tmp = temp_set_name(name);
        let members: MarkedSet = desired.iter().copied().collect();
        let list: Vec<Member> = members.iter().collect();
        let untouched = |error: IpsetError| Failed { error, clean: true };
        // A temp set of this name is ours, left by a run that crashed half-way.
        match self.kernel.destroy(&tmp) {
            Ok(()) => {}
            Err(e) if e.code == ErrorCode::SetNotFound => {}
            Err(e) => return Err(untouched(e.set(&tmp))),
        }
        self.kernel.create(&tmp, &spec_sized(spec, list.len()), false).map_err(|e| untouched(e.set(&tmp)))?;
        if let Err(e) = self.fill(&tmp, spec.set_type, &list) {
            let _ = self.kernel.destroy(&tmp);
            return Err(untouched(e.set(name)));
        }
        let mut result = SyncResult { created: false, added: list.len(), removed: old_len, swapped: true };
        match self.kernel.swap(name, &tmp) {
            Ok(()) => {
                // The old contents now sit in the temp set, which nothing refers to.
                let _ = self.kernel.destroy(&tmp);
            }
            Err(e) if e.code == ErrorCode::TypeMismatch => {
                // Type or family changed: a swap cannot do it, so the set is replaced by name, which
                // the kernel allows only while nothing refers to it.
                self.replace_by_name(name, &tmp, spec)?;
                result.swapped = false;
                result.created = true;
            }
            Err(e) if e.code == ErrorCode::SetNotFound => {
                // It went while we filled the temp set: the temp set takes its name.
                if let Err(e) = self.kernel.rename(&tmp, name) {
                    let _ = self.kernel.destroy(&tmp);
                    return Err(untouched(e.set(name)));
                }
                result = SyncResult { created: true, added: list.len(), removed: 0, swapped: false };
            }
            Err(e) => {
                let _ = self.kernel.destroy(&tmp);
                return Err(untouched(e.set(name)));
            }
        }
        let identity = self.identify(name, spec, list.len());
        self.mirror.insert(name.into(), Managed::new(spec.clone(), members, identity));
        Ok(result)
    }

    /// Puts the filled temp set in the place of `name`, which is of another type or family: `name`
    /// is renamed aside (the kernel refuses that while a rule refers to it: then nothing changes),
    /// the temp set takes its name, and the old set goes. Renamed back if the temp set cannot take
    /// the name; the temp set is destroyed on every failure.
    fn replace_by_name(&mut self, name: &str, tmp: &str, spec: &SetSpec) -> Result<(), Failed> {
        let aside = temp_set_name(tmp);
        let give_up = |k: &mut K, error: IpsetError, clean: bool| {
            let _ = k.destroy(tmp);
            Failed { error, clean }
        };
        match self.kernel.destroy(&aside) {
            Ok(()) => {}
            Err(e) if e.code == ErrorCode::SetNotFound => {}
            Err(e) => return Err(give_up(&mut self.kernel, e.set(&aside), true)),
        }
        if let Err(e) = self.kernel.rename(name, &aside) {
            let error = if e.code == ErrorCode::SetInUse {
                IpsetError::new(
                    ErrorCode::TypeMismatch,
                    format!(
                        "the set must become {} {} but is in use; it can change type only when nothing refers to it",
                        spec.set_type.as_str(),
                        spec.family.as_str()
                    ),
                )
                .set(name)
            } else {
                e.set(name)
            };
            return Err(give_up(&mut self.kernel, error, true));
        }
        if let Err(e) = self.kernel.rename(tmp, name) {
            let clean = self.kernel.rename(&aside, name).is_ok();
            return Err(give_up(&mut self.kernel, e.set(name), clean));
        }
        // The old set, now aside, is referred to by nothing; if it cannot go now, the next replace
        // of this name removes it (its name is temp-shaped: no one else's).
        let _ = self.kernel.destroy(&aside);
        Ok(())
    }

    /// Deletes, then adds, strictly, so that every acknowledgement means the kernel changed; on a
    /// failure everything acknowledged is undone. A strict delete of what is already gone (or add of
    /// what is there) means the kernel was already as wanted: not a failure.
    fn in_place(&mut self, name: &str, set_type: SetType, diff: &MemberDiff) -> Result<(usize, usize), Failed> {
        let mut removed: Vec<Member> = Vec::new();
        let mut added: Vec<Member> = Vec::new();
        for (op, batch) in [(Adt::Del, &diff.del), (Adt::Add, &diff.add)] {
            if batch.is_empty() {
                continue;
            }
            let error = match self.kernel.adt(op, name, set_type, batch, false) {
                Ok(report) => {
                    let done = report.applied(batch).copied();
                    match op {
                        Adt::Del => removed.extend(done),
                        Adt::Add => added.extend(done),
                    }
                    match first_real_failure(op, name, batch, &report) {
                        None => continue,
                        Some(e) => e,
                    }
                }
                // Not even sent (or the answer lost): what happened to this batch is unknown.
                Err(e) => return Err(Failed { error: e.set(name), clean: false }),
            };
            let clean = self.undo(name, set_type, &added, &removed);
            return Err(Failed { error, clean });
        }
        Ok((added.len(), removed.len()))
    }

    /// Takes back acknowledged adds and deletes; true when all of it was acknowledged in turn.
    fn undo(&mut self, name: &str, set_type: SetType, added: &[Member], removed: &[Member]) -> bool {
        let mut clean = true;
        for (op, batch) in [(Adt::Del, added), (Adt::Add, removed)] {
            if batch.is_empty() {
                continue;
            }
            clean &= matches!(self.kernel.adt(op, name, set_type, batch, false), Ok(r) if r.failed.is_empty());
        }
        clean
    }
}
