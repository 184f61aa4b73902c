//! The JS face of `ipset::IpsetClient`: type conversion and work spawned on the libuv pool, nothing
//! more. Every kernel call runs in a `Task` off the JS thread; a client's calls are serialised by its
//! mutex (one netlink socket, one mirror).
//!
//! Member lists cross the boundary packed in one `Buffer` (`ipset::packed`): converting 100k JS
//! strings one by one costs more than the kernel work of a small diff.

use std::path::PathBuf;
use std::time::Instant;

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

use sg_agent_core::ipset::diff::MarkedSet;
use sg_agent_core::ipset::{
    decode_members, probe_protocol, temp_set_name, Adt, BatchResult, ErrorCode, Family, IpsetClient, IpsetError, SetHeader, SetSpec,
    SetType, SyncResult, SyncStrategy,
};

use crate::js_error::Coded;
use crate::task::{close, on_client, shared, work, work_then, OnClient, Shared, Work};

#[napi(object)]
pub struct JsSetSpec {
    #[napi(js_name = "type")]
    pub set_type: String,
    pub family: String,
    pub hashsize: Option<u32>,
    pub maxelem: Option<u32>,
    pub timeout: Option<u32>,
    pub comment: Option<bool>,
}

#[napi(object)]
pub struct JsSetHeader {
    pub name: String,
    #[napi(js_name = "type")]
    pub type_name: String,
    pub family: String,
    pub revision: u32,
    pub hashsize: u32,
    pub maxelem: u32,
    pub memory: u32,
    pub references: u32,
    pub entries: Option<u32>,
    pub timeout: Option<u32>,
    pub comment: bool,
}

#[napi(object)]
pub struct JsSetContents {
    pub header: JsSetHeader,
    /// Newline-joined members, as `ipset save` prints them.
    pub members: String,
}

#[napi(object)]
pub struct JsFailedMember {
    pub member: String,
    pub code: String,
    pub message: String,
}

#[napi(object)]
pub struct JsBatchResult {
    pub applied: u32,
    pub failed: Vec<JsFailedMember>,
}

#[napi(object)]
pub struct JsSyncResult {
    pub created: bool,
    pub added: u32,
    pub removed: u32,
    pub swapped: bool,
}

#[napi(object)]
pub struct JsReconcileResult {
    pub added: u32,
    pub removed: u32,
    pub repaired: bool,
}

#[napi(object)]
pub struct JsDiffMeasure {
    pub add: u32,
    pub del: u32,
    pub nanos: f64,
}

fn spec_from_js(name: &str, s: &JsSetSpec) -> std::result::Result<SetSpec, IpsetError> {
    let bad = |m: String| IpsetError::new(ErrorCode::InvalidSpec, m).set(name);
    Ok(SetSpec {
        set_type: SetType::parse(&s.set_type).ok_or_else(|| bad(format!("unsupported set type {:?}", s.set_type)))?,
        family: Family::parse(&s.family).ok_or_else(|| bad(format!("family must be inet or inet6, not {:?}", s.family)))?,
        hashsize: s.hashsize,
        maxelem: s.maxelem,
        timeout: s.timeout,
        comment: s.comment.unwrap_or(false),
    })
}

fn header_to_js(h: SetHeader) -> JsSetHeader {
    JsSetHeader {
        comment: h.comment(),
        name: h.name,
        type_name: h.type_name,
        family: h.family.map(|f| f.as_str().to_string()).unwrap_or_default(),
        revision: h.revision as u32,
        hashsize: h.hashsize,
        maxelem: h.maxelem,
        memory: h.memory,
        references: h.references,
        entries: h.entries,
        timeout: h.timeout,
    }
}

fn sync_to_js(r: SyncResult) -> JsSyncResult {
    JsSyncResult { created: r.created, added: r.added as u32, removed: r.removed as u32, swapped: r.swapped }
}

fn batch_to_js(r: BatchResult) -> JsBatchResult {
    JsBatchResult {
        applied: r.applied as u32,
        failed: r
            .failed
            .into_iter()
            .map(|f| JsFailedMember { member: f.member, code: f.error.code.as_str().into(), message: f.error.message })
            .collect(),
    }
}

#[napi]
pub struct NativeIpset {
    client: Shared<IpsetClient>,
    protocol: u32,
}

fn closed() -> Coded {
    IpsetError::new(ErrorCode::ClientClosed, "the ipset client is closed").into()
}

#[napi]
impl NativeIpset {
    fn run<T, F>(&self, f: F) -> AsyncTask<OnClient<IpsetClient, T>>
    where
        T: ToNapiValue + TypeName + Send + 'static,
        F: FnOnce(&mut IpsetClient) -> std::result::Result<T, IpsetError> + Send + 'static,
    {
        on_client(&self.client, closed, f)
    }

    /// Opens a client; `netns` is a namespace path such as /var/run/netns/X or /proc/PID/ns/net.
    #[napi(ts_return_type = "Promise<NativeIpset>")]
    pub fn open(netns: Option<String>) -> AsyncTask<Work<IpsetClient, NativeIpset>> {
        let netns = netns.map(PathBuf::from);
        work_then(
            move || IpsetClient::open(netns.as_deref()),
            |client| {
                let protocol = client.protocol() as u32;
                NativeIpset { client: shared(client), protocol }
            },
        )
    }

    #[napi(getter)]
    pub fn protocol(&self) -> u32 {
        self.protocol
    }

    /// Closes the socket once the calls already queued are done; later calls fail with CLIENT_CLOSED.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self) -> AsyncTask<Work<(), ()>> {
        close(&self.client)
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn create(&self, name: String, spec: JsSetSpec, exist: bool) -> AsyncTask<OnClient<IpsetClient, ()>> {
        self.run(move |c| {
            let spec = spec_from_js(&name, &spec)?;
            c.create(&name, &spec, exist)
        })
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn destroy(&self, name: String) -> AsyncTask<OnClient<IpsetClient, ()>> {
        self.run(move |c| c.destroy(&name))
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn flush(&self, name: String) -> AsyncTask<OnClient<IpsetClient, ()>> {
        self.run(move |c| c.flush(&name))
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn rename(&self, from: String, to: String) -> AsyncTask<OnClient<IpsetClient, ()>> {
        self.run(move |c| c.rename(&from, &to))
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn swap(&self, a: String, b: String) -> AsyncTask<OnClient<IpsetClient, ()>> {
        self.run(move |c| c.swap(&a, &b))
    }

    #[napi(ts_return_type = "Promise<Array<string>>")]
    pub fn list_names(&self) -> AsyncTask<OnClient<IpsetClient, Vec<String>>> {
        self.run(|c| c.list_names())
    }

    #[napi(ts_return_type = "Promise<JsSetHeader>")]
    pub fn header(&self, name: String) -> AsyncTask<OnClient<IpsetClient, JsSetHeader>> {
        self.run(move |c| c.header(&name).map(header_to_js))
    }

    #[napi(ts_return_type = "Promise<JsSetContents>")]
    pub fn read_set(&self, name: String) -> AsyncTask<OnClient<IpsetClient, JsSetContents>> {
        self.run(move |c| {
            let (h, members) = c.read_set(&name)?;
            let mut joined = String::with_capacity(members.len() * 12);
            for (i, m) in members.iter().enumerate() {
                if i > 0 {
                    joined.push('\n');
                }
                use std::fmt::Write;
                let _ = write!(joined, "{m}");
            }
            Ok(JsSetContents { header: header_to_js(h), members: joined })
        })
    }

    /// `members` is a packed member list (see the module comment).
    #[napi(ts_return_type = "Promise<JsBatchResult>")]
    pub fn add(&self, name: String, members: Buffer, exist: bool) -> AsyncTask<OnClient<IpsetClient, JsBatchResult>> {
        self.run(move |c| c.adt_packed(Adt::Add, &name, &members, exist).map(batch_to_js))
    }

    #[napi(ts_return_type = "Promise<JsBatchResult>")]
    pub fn del(&self, name: String, members: Buffer, exist: bool) -> AsyncTask<OnClient<IpsetClient, JsBatchResult>> {
        self.run(move |c| c.adt_packed(Adt::Del, &name, &members, exist).map(batch_to_js))
    }

    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn test(&self, name: String, member: String) -> AsyncTask<OnClient<IpsetClient, bool>> {
        self.run(move |c| c.test(&name, &member))
    }

    /// `members` is a packed member list.
    #[napi(ts_return_type = "Promise<JsSyncResult>")]
    pub fn sync_set(&self, name: String, spec: JsSetSpec, members: Buffer) -> AsyncTask<OnClient<IpsetClient, JsSyncResult>> {
        self.run(move |c| {
            let spec = spec_from_js(&name, &spec)?;
            c.sync_set_packed(&name, &spec, &members, SyncStrategy::Auto).map(sync_to_js)
        })
    }

    /// For benchmarks only (reached through `src/internal/hooks.ts`, not the package's API): `syncSet`
    /// with the in-place/swap choice forced, to measure where the threshold lies.
    #[napi(ts_return_type = "Promise<JsSyncResult>")]
    pub fn sync_set_forced(
        &self,
        name: String,
        spec: JsSetSpec,
        members: Buffer,
        strategy: String,
    ) -> AsyncTask<OnClient<IpsetClient, JsSyncResult>> {
        self.run(move |c| {
            let spec = spec_from_js(&name, &spec)?;
            let strategy = match strategy.as_str() {
                "inplace" => SyncStrategy::InPlace,
                "swap" => SyncStrategy::Swap,
                _ => SyncStrategy::Auto,
            };
            c.sync_set_packed(&name, &spec, &members, strategy).map(sync_to_js)
        })
    }

    /// For tests (through `src/internal/`): bytes this client has sent to the kernel.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn bytes_sent(&self) -> AsyncTask<OnClient<IpsetClient, f64>> {
        self.run(|c| Ok(c.bytes_sent() as f64))
    }

    #[napi(ts_return_type = "Promise<JsReconcileResult>")]
    pub fn reconcile(&self, name: String) -> AsyncTask<OnClient<IpsetClient, JsReconcileResult>> {
        self.run(move |c| {
            let r = c.reconcile(&name)?;
            Ok(JsReconcileResult { added: r.added as u32, removed: r.removed as u32, repaired: r.repaired })
        })
    }
}

/// The temp set a replace of `name` builds beside it (see `ipset::name::temp_set_name`), so that the
/// set's owner can recognise a stale one.
#[napi]
pub fn ipset_temp_name(name: String) -> String {
    temp_set_name(&name)
}

/// The members of a packed list as `ipset save` prints them (what the JS side's packing means, for
/// its tests); a member that is not one throws INVALID_MEMBER naming it.
#[napi]
pub fn ipset_decode_members(env: Env, packed: Buffer) -> Result<Vec<String>> {
    decode_members("-", None, &packed).map(|ms| ms.iter().map(|m| m.to_string()).collect()).map_err(|e| Coded::from(e).into_js(&env))
}

/// For the `native.diff100k` benchmark: one full-sync diff pass (a desired list against the set a
/// client keeps), timed in Rust.
#[napi(ts_return_type = "Promise<JsDiffMeasure>")]
pub fn measure_diff(current: Buffer, desired: Buffer) -> AsyncTask<Work<JsDiffMeasure, JsDiffMeasure>> {
    work(move || {
        let mut set: MarkedSet = decode_members("bench", None, &current)?.into_iter().collect();
        let started = Instant::now();
        let desired = decode_members("bench", None, &desired)?;
        let d = set.diff_to(&desired);
        let nanos = started.elapsed().as_nanos() as f64;
        Ok::<_, IpsetError>(JsDiffMeasure { add: d.add.len() as u32, del: d.del.len() as u32, nanos })
    })
}

/// The kernel's ipset protocol (7, or 6), asked with no other side effect.
#[napi(ts_return_type = "Promise<number>")]
pub fn ipset_protocol(netns: Option<String>) -> AsyncTask<Work<u32, u32>> {
    let netns = netns.map(PathBuf::from);
    work(move || probe_protocol(netns.as_deref()).map(u32::from))
}
