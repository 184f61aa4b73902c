//! The JS face of `ipset::IpsetClient`: type conversion and work spawned on the libuv pool, nothing
//! more. Every kernel call runs in a `Task` off the JS thread; a client's calls are serialised by its
//! mutex (one netlink socket, one mirror).
//!
//! Member lists cross the boundary packed in one `Buffer` (`ipset::packed`): converting 100k JS
//! strings one by one costs more than the kernel work of a small diff.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use napi::bindgen_prelude::*;
use napi::{Env, Task};
use napi_derive::napi;

use sg_agent_core::ipset::diff::MarkedSet;
use sg_agent_core::ipset::{
    decode_members, probe_protocol, temp_set_name, Adt, BatchResult, ErrorCode, Family, IpsetClient, IpsetError, SetHeader,
    SetSpec, SetType, SyncResult, SyncStrategy,
};

use crate::js_error::{Coded, Failure};

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

/// `None` once the client is closed: its socket is gone and every later call says so.
type Shared = Arc<Mutex<Option<IpsetClient>>>;
type Job<T> = Box<dyn FnOnce(&mut IpsetClient) -> std::result::Result<T, IpsetError> + Send>;

/// One call on a client, run on the libuv pool.
pub struct ClientTask<T: Send + 'static> {
    client: Shared,
    job: Option<Job<T>>,
    failure: Failure,
}

impl<T: ToNapiValue + TypeName + Send + 'static> Task for ClientTask<T> {
    type Output = T;
    type JsValue = T;

    fn compute(&mut self) -> Result<T> {
        let job = self.job.take().ok_or_else(|| Error::from_reason("task ran twice"))?;
        let mut guard = self.client.lock().map_err(|_| Error::from_reason("ipset client poisoned by a panic"))?;
        let Some(client) = guard.as_mut() else {
            return Err(self.failure.keep(IpsetError::new(ErrorCode::ClientClosed, "the ipset client is closed")));
        };
        job(client).map_err(|e| self.failure.keep(e))
    }

    fn resolve(&mut self, _env: Env, output: T) -> Result<T> {
        Ok(output)
    }

    fn reject(&mut self, env: Env, err: Error) -> Result<T> {
        self.failure.reject(&env, err)
    }
}

/// Opening the socket and negotiating the protocol are kernel calls too.
pub struct OpenTask {
    netns: Option<PathBuf>,
    failure: Failure,
}

impl Task for OpenTask {
    type Output = IpsetClient;
    type JsValue = NativeIpset;

    fn compute(&mut self) -> Result<IpsetClient> {
        IpsetClient::open(self.netns.as_deref()).map_err(|e| self.failure.keep(e))
    }

    fn resolve(&mut self, _env: Env, client: IpsetClient) -> Result<NativeIpset> {
        let protocol = client.protocol() as u32;
        Ok(NativeIpset { client: Arc::new(Mutex::new(Some(client))), protocol })
    }

    fn reject(&mut self, env: Env, err: Error) -> Result<NativeIpset> {
        self.failure.reject(&env, err)
    }
}

#[napi]
pub struct NativeIpset {
    client: Shared,
    protocol: u32,
}

#[napi]
impl NativeIpset {
    fn run<T, F>(&self, f: F) -> AsyncTask<ClientTask<T>>
    where
        T: ToNapiValue + TypeName + Send + 'static,
        F: FnOnce(&mut IpsetClient) -> std::result::Result<T, IpsetError> + Send + 'static,
    {
        AsyncTask::new(ClientTask { client: self.client.clone(), job: Some(Box::new(f)), failure: Failure::default() })
    }

    /// Opens a client; `netns` is a namespace path such as /var/run/netns/X or /proc/PID/ns/net.
    #[napi(ts_return_type = "Promise<NativeIpset>")]
    pub fn open(netns: Option<String>) -> AsyncTask<OpenTask> {
        AsyncTask::new(OpenTask { netns: netns.map(PathBuf::from), failure: Failure::default() })
    }

    #[napi(getter)]
    pub fn protocol(&self) -> u32 {
        self.protocol
    }

    /// Closes the socket once the calls already queued are done; later calls fail with CLIENT_CLOSED.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self) -> AsyncTask<CloseTask> {
        AsyncTask::new(CloseTask { client: self.client.clone() })
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn create(&self, name: String, spec: JsSetSpec, exist: bool) -> AsyncTask<ClientTask<()>> {
        self.run(move |c| {
            let spec = spec_from_js(&name, &spec)?;
            c.create(&name, &spec, exist)
        })
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn destroy(&self, name: String) -> AsyncTask<ClientTask<()>> {
        self.run(move |c| c.destroy(&name))
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn flush(&self, name: String) -> AsyncTask<ClientTask<()>> {
        self.run(move |c| c.flush(&name))
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn rename(&self, from: String, to: String) -> AsyncTask<ClientTask<()>> {
        self.run(move |c| c.rename(&from, &to))
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn swap(&self, a: String, b: String) -> AsyncTask<ClientTask<()>> {
        self.run(move |c| c.swap(&a, &b))
    }

    #[napi(ts_return_type = "Promise<Array<string>>")]
    pub fn list_names(&self) -> AsyncTask<ClientTask<Vec<String>>> {
        self.run(|c| c.list_names())
    }

    #[napi(ts_return_type = "Promise<JsSetHeader>")]
    pub fn header(&self, name: String) -> AsyncTask<ClientTask<JsSetHeader>> {
        self.run(move |c| c.header(&name).map(header_to_js))
    }

    #[napi(ts_return_type = "Promise<JsSetContents>")]
    pub fn read_set(&self, name: String) -> AsyncTask<ClientTask<JsSetContents>> {
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
    pub fn add(&self, name: String, members: Buffer, exist: bool) -> AsyncTask<ClientTask<JsBatchResult>> {
        self.run(move |c| c.adt_packed(Adt::Add, &name, &members, exist).map(batch_to_js))
    }

    #[napi(ts_return_type = "Promise<JsBatchResult>")]
    pub fn del(&self, name: String, members: Buffer, exist: bool) -> AsyncTask<ClientTask<JsBatchResult>> {
        self.run(move |c| c.adt_packed(Adt::Del, &name, &members, exist).map(batch_to_js))
    }

    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn test(&self, name: String, member: String) -> AsyncTask<ClientTask<bool>> {
        self.run(move |c| c.test(&name, &member))
    }

    /// `members` is a packed member list.
    #[napi(ts_return_type = "Promise<JsSyncResult>")]
    pub fn sync_set(&self, name: String, spec: JsSetSpec, members: Buffer) -> AsyncTask<ClientTask<JsSyncResult>> {
        self.run(move |c| {
            let spec = spec_from_js(&name, &spec)?;
            c.sync_set_packed(&name, &spec, &members, SyncStrategy::Auto).map(sync_to_js)
        })
    }

    /// For benchmarks only (reached through `src/internal/hooks.ts`, not the package's API): `syncSet`
    /// with the in-place/swap choice forced, to measure where the threshold lies.
    #[napi(ts_return_type = "Promise<JsSyncResult>")]
    pub fn sync_set_forced(&self, name: String, spec: JsSetSpec, members: Buffer, strategy: String) -> AsyncTask<ClientTask<JsSyncResult>> {
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
    pub fn bytes_sent(&self) -> AsyncTask<ClientTask<f64>> {
        self.run(|c| Ok(c.bytes_sent() as f64))
    }

    #[napi(ts_return_type = "Promise<JsReconcileResult>")]
    pub fn reconcile(&self, name: String) -> AsyncTask<ClientTask<JsReconcileResult>> {
        self.run(move |c| {
            let r = c.reconcile(&name)?;
            Ok(JsReconcileResult { added: r.added as u32, removed: r.removed as u32, repaired: r.repaired })
        })
    }
}

pub struct CloseTask {
    client: Shared,
}

impl Task for CloseTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> Result<()> {
        // Waits for a call in progress; dropping the client closes its socket.
        if let Ok(mut guard) = self.client.lock() {
            guard.take();
        }
        Ok(())
    }

    fn resolve(&mut self, _env: Env, _: ()) -> Result<()> {
        Ok(())
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
    decode_members("-", None, &packed)
        .map(|ms| ms.iter().map(|m| m.to_string()).collect())
        .map_err(|e| Coded::from(e).into_js(&env))
}

/// For the `native.diff100k` benchmark: one full-sync diff pass (a desired list against the set a
/// client keeps), timed in Rust.
#[napi(ts_return_type = "Promise<JsDiffMeasure>")]
pub fn measure_diff(current: Buffer, desired: Buffer) -> AsyncTask<DiffTask> {
    AsyncTask::new(DiffTask { current, desired, failure: Failure::default() })
}

pub struct DiffTask {
    current: Buffer,
    desired: Buffer,
    failure: Failure,
}

impl Task for DiffTask {
    type Output = JsDiffMeasure;
    type JsValue = JsDiffMeasure;

    fn compute(&mut self) -> Result<JsDiffMeasure> {
        let mut set: MarkedSet = decode_members("bench", None, &self.current).map_err(|e| self.failure.keep(e))?.into_iter().collect();
        let started = Instant::now();
        let desired = decode_members("bench", None, &self.desired).map_err(|e| self.failure.keep(e))?;
        let d = set.diff_to(&desired);
        let nanos = started.elapsed().as_nanos() as f64;
        Ok(JsDiffMeasure { add: d.add.len() as u32, del: d.del.len() as u32, nanos })
    }

    fn resolve(&mut self, _env: Env, output: JsDiffMeasure) -> Result<JsDiffMeasure> {
        Ok(output)
    }

    fn reject(&mut self, env: Env, err: Error) -> Result<JsDiffMeasure> {
        self.failure.reject(&env, err)
    }
}

/// The kernel's ipset protocol (7, or 6), asked with no other side effect.
#[napi(ts_return_type = "Promise<number>")]
pub fn ipset_protocol(netns: Option<String>) -> AsyncTask<ProbeTask> {
    AsyncTask::new(ProbeTask { netns: netns.map(PathBuf::from), failure: Failure::default() })
}

pub struct ProbeTask {
    netns: Option<PathBuf>,
    failure: Failure,
}

impl Task for ProbeTask {
    type Output = u32;
    type JsValue = u32;

    fn compute(&mut self) -> Result<u32> {
        probe_protocol(self.netns.as_deref()).map(u32::from).map_err(|e| self.failure.keep(e))
    }

    fn resolve(&mut self, _env: Env, output: u32) -> Result<u32> {
        Ok(output)
    }

    fn reject(&mut self, env: Env, err: Error) -> Result<u32> {
        self.failure.reject(&env, err)
    }
}
