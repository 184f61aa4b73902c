//! Drift repair on the kernel's word: a socket joined to NFNLGRP_NFTABLES hears every committed
//! change to the namespace's nf_tables. A change to one of our tables made by anyone but this
//! client (another port id) is repaired at once — after a short quiet spell, so a burst of hand-made
//! changes costs one repair — by the client's own reconcile against its mirror, reading back only the
//! chains and sets the notifications named. A table changed, or notifications lost to a full receive
//! buffer, make the repair compare everything.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::client::NftClient;
use super::constants::*;
use super::message::Object;
use super::reconcile::{ReconcileReport, Scope};
use super::spec::Family;
use crate::error::{SysCode, SysError};
use crate::netlink::{ListenerThread, NfnlBody, NfnlMessage, NfnlSocket};

/// How long the table must stay quiet before a repair: one transaction's notifications come all at
/// once; a script of hand-made changes comes as several, a few milliseconds apart.
const SETTLE: Duration = Duration::from_millis(5);
/// A repair waits at most this long for quiet.
const SETTLE_MAX: Duration = Duration::from_millis(100);

pub enum WatchEvent {
    /// A foreign change was found and what differed was put back.
    Repaired(ReconcileReport),
    /// A repair could not run (the socket, a dump) or the kernel refused it.
    Failed(String),
}

pub struct Watch {
    thread: ListenerThread,
}

/// What the notifications so far ask to be looked at: the chains and sets they named, or (a table
/// changed, or notifications were lost) everything.
#[derive(Default)]
struct Dirty {
    any: bool,
    everything: bool,
    chains: HashSet<(Family, String, String)>,
    sets: HashSet<(Family, String, String)>,
}

impl Watch {
    pub fn start<F>(netns: Option<&Path>, client: Arc<Mutex<Option<NftClient>>>, on_event: F) -> Result<Watch, SysError>
    where
        F: Fn(WatchEvent) + Send + 'static,
    {
        let mut sub = NfnlSocket::open(netns).map_err(|e| SysError::from_io(SysCode::NftablesFailed, &e))?;
        sub.join_group(NFNLGRP_NFTABLES).map_err(|e| SysError::from_io(SysCode::NftablesFailed, &e))?;
        let own = client.lock().ok().and_then(|g| g.as_ref().map(|c| c.portid())).unwrap_or(0);
        let thread = ListenerThread::spawn("sg-nft-watch", move |signal| {
            let mut dirty = Dirty::default();
            let mut first_change: Option<Instant> = None;
            let mut last_change = Instant::now();
            while !signal.is_stopped() {
                // Idle, the thread sleeps until the kernel or the stop wakes it.
                let wait = dirty.any.then_some(SETTLE);
                match sub.recv_waiting::<NfnlMessage>(signal, wait) {
                    Ok(Some(msgs)) => {
                        let Ok(guard) = client.lock() else { return };
                        let Some(c) = guard.as_ref() else { return };
                        for m in msgs {
                            if m.header.port_number == own {
                                continue;
                            }
                            let netlink_packet_core::NetlinkPayload::InnerMessage(NfnlMessage { header, body: NfnlBody::Nftables(n) }) =
                                m.payload
                            else {
                                continue;
                            };
                            let (Some(family), Some(table)) = (Family::from_nfproto(header.family), n.table()) else { continue };
                            if !c.owns_table(family, table) {
                                continue;
                            }
                            dirty.any = true;
                            let named = n.object_name().map(|o| (family, table.to_string(), o.to_string()));
                            match (Object::of(n.cmd), named) {
                                (Object::Set | Object::Elems, Some(k)) => {
                                    dirty.sets.insert(k);
                                }
                                (Object::Chain | Object::Rule, Some(k)) => {
                                    dirty.chains.insert(k);
                                }
                                (Object::Gen, _) => {}
                                _ => dirty.everything = true,
                            }
                            last_change = Instant::now();
                            first_change.get_or_insert(last_change);
                        }
                    }
                    Ok(None) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => {
                        dirty.any = true;
                        dirty.everything = true;
                        last_change = Instant::now();
                        first_change.get_or_insert(last_change);
                    }
                    Err(e) => {
                        on_event(WatchEvent::Failed(format!("nf_tables notifications: {e}")));
                        signal.pause(Duration::from_secs(1));
                        continue;
                    }
                }
                let settled = last_change.elapsed() >= SETTLE || first_change.is_some_and(|f| f.elapsed() >= SETTLE_MAX);
                if !dirty.any || !settled {
                    continue;
                }
                let d = std::mem::take(&mut dirty);
                first_change = None;
                let scope = Scope { quick: false, all_elements: d.everything, chains: (!d.everything).then_some(d.chains), sets: d.sets };
                let result = {
                    let Ok(mut guard) = client.lock() else { return };
                    let Some(c) = guard.as_mut() else { return };
                    c.reconcile(&scope)
                };
                match result {
                    Ok(r) if !r.failures.is_empty() => {
                        on_event(WatchEvent::Failed(r.failures.iter().map(|f| f.message.clone()).collect::<Vec<_>>().join("; ")))
                    }
                    Ok(r) if r.repaired() > 0 => on_event(WatchEvent::Repaired(r)),
                    Ok(_) => {}
                    Err(e) => on_event(WatchEvent::Failed(e.to_string())),
                }
            }
        })
        .map_err(|e| SysError::from_io(SysCode::NftablesFailed, &e))?;
        Ok(Watch { thread })
    }

    /// Stops listening; returns once the thread is gone (at once, or after a repair under way).
    pub fn stop(&mut self) {
        self.thread.stop();
    }
}
