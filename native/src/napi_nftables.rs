//! The JS face of `nftables::NftClient`: work on the libuv pool, results as JSON text (their shape
//! is declared once, in src/addon/nftables.ts), and the drift watch's events delivered to
//! a JS callback from its own thread. A client's calls are serialised by its mutex (one socket, one
//! mirror), which the watch thread takes too when it repairs.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status};
use napi_derive::napi;

use sg_agent_core::error::{SysCode, SysError};
use sg_agent_core::nftables::constants::{NFPROTO_IPV4, NFPROTO_IPV6};
use sg_agent_core::nftables::{probe, Family, NftClient, Op, Scope, Watch, WatchEvent};

use crate::js_error::Coded;
use crate::task::{on_client, shared, work, work_then, OnClient, Shared, Work};

fn closed() -> Coded {
    SysError::new(SysCode::NftablesFailed, "the nf_tables client is closed").into()
}

fn json<T: serde::Serialize>(v: &T) -> std::result::Result<String, SysError> {
    serde_json::to_string(v).map_err(|e| SysError::new(SysCode::NftablesFailed, e.to_string()))
}

fn family(s: &str) -> std::result::Result<Family, SysError> {
    match s {
        "inet" => Ok(Family::Inet),
        "bridge" => Ok(Family::Bridge),
        _ => Err(SysError::new(SysCode::InvalidArgument, format!("family must be inet or bridge, not {s:?}"))),
    }
}

/// The watch's events, as JSON text: `{"repaired": <report>}` or `{"failed": "<why>"}`.
type EventCallback = ThreadsafeFunction<String, (), String, Status, false, true>;

#[napi]
pub struct NativeNftables {
    client: Shared<NftClient>,
    watch: Arc<Mutex<Option<Watch>>>,
    netns: Option<PathBuf>,
}

#[napi]
impl NativeNftables {
    fn run<T, F>(&self, f: F) -> AsyncTask<OnClient<NftClient, T>>
    where
        T: ToNapiValue + TypeName + Send + 'static,
        F: FnOnce(&mut NftClient) -> std::result::Result<T, SysError> + Send + 'static,
    {
        on_client(&self.client, closed, f)
    }

    /// Opens a client in the namespace at `netns` (or this process's own).
    #[napi(ts_return_type = "Promise<NativeNftables>")]
    pub fn open(netns: Option<String>) -> AsyncTask<Work<NftClient, NativeNftables>> {
        let netns = netns.map(PathBuf::from);
        let at = netns.clone();
        work_then(
            move || NftClient::open(netns.as_deref()),
            move |client| NativeNftables { client: shared(client), watch: Arc::new(Mutex::new(None)), netns: at },
        )
    }

    /// Applies a JSON list of operations as one transaction; resolves with the JSON result
    /// (`{committed, failures}`). With `generation`, only if the ruleset is still at it (else
    /// refused whole, code RETRY).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn transact(&self, ops: String, generation: Option<u32>) -> AsyncTask<OnClient<NftClient, String>> {
        self.run(move |c| json(&c.transact_json(&ops, generation)?))
    }

    /// Has the kernel check a transaction and abort it (nothing changes).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn check(&self, ops: String) -> AsyncTask<OnClient<NftClient, String>> {
        self.run(move |c| {
            let ops: Vec<Op> =
                serde_json::from_str(&ops).map_err(|e| SysError::new(SysCode::InvalidArgument, format!("nf_tables operations: {e}")))?;
            json(&c.check(&ops)?)
        })
    }

    /// Compares our tables with what was committed and repairs the difference; `quick`: skip when
    /// the ruleset generation has not moved; `allElements`: compare every set's elements.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn reconcile(&self, quick: bool, all_elements: bool) -> AsyncTask<OnClient<NftClient, String>> {
        self.run(move |c| json(&c.reconcile(&Scope { quick, all_elements, ..Default::default() })?))
    }

    /// The ruleset's generation: it moves with every change committed to the namespace's
    /// nf_tables, anyone's (iptables-nft's included).
    #[napi(ts_return_type = "Promise<number>")]
    pub fn generation(&self) -> AsyncTask<OnClient<NftClient, f64>> {
        self.run(|c| Ok(c.gen_id()? as f64))
    }

    /// `[[family, name], …]` of the namespace's inet and bridge tables.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn list_tables(&self) -> AsyncTask<OnClient<NftClient, String>> {
        self.run(|c| {
            let t: Vec<(&str, String)> = c.list_tables()?.into_iter().map(|(f, n)| (f.as_str(), n)).collect();
            json(&t)
        })
    }

    /// What a table holds (chains with their rule counts, sets with their sizes), or null.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn describe(&self, family_name: String, table: String) -> AsyncTask<OnClient<NftClient, String>> {
        self.run(move |c| json(&c.describe(family(&family_name)?, &table)?))
    }

    /// Every rule of a table (`family`: inet, bridge, or ip / ip6 for iptables-nft's tables), or of
    /// one of its chains, with its handle, place and counts: JSON `RuleStat[]`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn rule_stats(&self, family_name: String, table: String, chain: Option<String>) -> AsyncTask<OnClient<NftClient, String>> {
        self.run(move |c| {
            let nfproto = match family_name.as_str() {
                "ip" => NFPROTO_IPV4,
                "ip6" => NFPROTO_IPV6,
                f => family(f)?.nfproto(),
            };
            json(&c.rule_stats(nfproto, &table, chain.as_deref())?)
        })
    }

    /// Stops comparing and repairing a table (after it was removed).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn forget(&self, family_name: String, table: String) -> AsyncTask<OnClient<NftClient, ()>> {
        self.run(move |c| {
            c.forget(family(&family_name)?, &table);
            Ok(())
        })
    }

    /// Transactions this client committed (its own and its repairs).
    #[napi(ts_return_type = "Promise<number>")]
    pub fn commits(&self) -> AsyncTask<OnClient<NftClient, f64>> {
        self.run(|c| Ok(c.commits as f64))
    }

    /// Listens for changes others make to our tables and repairs them at once; `onEvent` receives
    /// each repair (or failure) as JSON text. Does not keep the process alive.
    #[napi(ts_args_type = "onEvent: (event: string) => void")]
    pub fn watch(&self, env: Env, on_event: EventCallback) -> Result<()> {
        // Synchronous: its errors become coded JS errors here, as the tasks' do in `reject`.
        let coded = |e: SysError| Coded::from(e).into_js(&env);
        let mut slot = self.watch.lock().map_err(|_| coded(SysError::new(SysCode::NftablesFailed, "the watch's lock is poisoned")))?;
        if slot.is_some() {
            return Ok(());
        }
        let w = Watch::start(self.netns.as_deref(), self.client.clone(), move |ev| {
            let text = match ev {
                WatchEvent::Repaired(r) => serde_json::json!({ "repaired": r }).to_string(),
                WatchEvent::Failed(m) => serde_json::json!({ "failed": m }).to_string(),
            };
            on_event.call(text, ThreadsafeFunctionCallMode::NonBlocking);
        })
        .map_err(coded)?;
        *slot = Some(w);
        Ok(())
    }

    /// Stops the watch and closes the socket once calls already queued are done.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self) -> AsyncTask<Work<(), ()>> {
        let (client, watch) = (self.client.clone(), self.watch.clone());
        work(move || {
            if let Ok(mut w) = watch.lock() {
                if let Some(mut w) = w.take() {
                    w.stop();
                }
            }
            if let Ok(mut guard) = client.lock() {
                guard.take();
            }
            Ok::<(), Coded>(())
        })
    }
}

/// What the kernel of the namespace supports (JSON: inet, bridge, conntrackBridge, bridgeMeta,
/// notes), found by transactions the kernel checks and aborts.
#[napi(ts_return_type = "Promise<string>")]
pub fn nftables_probe(netns: Option<String>) -> AsyncTask<Work<String, String>> {
    let netns = netns.map(PathBuf::from);
    work(move || probe(netns.as_deref()).and_then(|s| json(&s)))
}

/// For the `nftables.boundary` benchmark: a transaction's operations read from JSON text (the
/// boundary as it is), and read from the JS objects themselves (napi's per-property conversion):
/// how many were read.
#[napi]
pub fn nftables_decode_json(env: Env, ops: String) -> Result<u32> {
    serde_json::from_str::<Vec<Op>>(&ops)
        .map(|v| v.len() as u32)
        .map_err(|e| Coded::from(SysError::new(SysCode::InvalidArgument, e.to_string())).into_js(&env))
}

#[napi]
pub fn nftables_decode_objects(env: Env, ops: Unknown) -> Result<u32> {
    let v: Vec<Op> =
        env.from_js_value(ops).map_err(|e| Coded::from(SysError::new(SysCode::InvalidArgument, e.to_string())).into_js(&env))?;
    Ok(v.len() as u32)
}
