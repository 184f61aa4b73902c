//! The JS face of `ipset::IpsetClient`: type conversion and work spawned on the libuv pool, nothing
//! more. Every kernel call runs in a `Task` off the JS thread; a client's calls are serialised by its
//! mutex (one netlink socket, one mirror).
//!
//! Member lists cross the boundary as one newline-joined string: converting 100k JS strings one by
//! one costs more than the kernel work of a small diff.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use napi::bindgen_prelude::*;
use napi::{Env, Task};
use napi_derive::napi;

use sg_agent_core::ipset::client::parse_members;
use sg_agent_core::ipset::diff::{diff_members, MemberSet};
use sg_agent_core::ipset::{ErrorCode, Family, IpsetClient, IpsetError, SetHeader, SetSpec, SetType, SyncStrategy};

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
    pub nanos: f64,
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

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The JS wrapper turns this JSON message into an `IpsetError` with a stable `code`.
fn to_js_error(e: IpsetError) -> Error {
    let mut j = format!("{{\"code\":{},\"message\":{}", json_str(e.code.as_str()), json_str(&e.message));
    if let Some(s) = &e.set {
        j.push_str(&format!(",\"set\":{}", json_str(s)));
    }
    if let Some(m) = &e.member {
        j.push_str(&format!(",\"member\":{}", json_str(m)));
    }
    if let Some(n) = e.errno {
        j.push_str(&format!(",\"errno\":{n}"));
    }
    j.push('}');
    Error::new(Status::GenericFailure, j)
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
        comment: h.comment,
    }
}

fn split_members(joined: &str) -> Vec<&str> {
    if joined.is_empty() {
        Vec::new()
    } else {
        joined.split('\n').collect()
    }
}

type Shared = Arc<Mutex<IpsetClient>>;
type Job<T> = Box<dyn FnOnce(&mut IpsetClient) -> std::result::Result<T, IpsetError> + Send>;

/// One call on a client, run on the libuv pool.
pub struct ClientTask<T: Send + 'static> {
    client: Shared,
    job: Option<Job<T>>,
}

impl<T: ToNapiValue + TypeName + Send + 'static> Task for ClientTask<T> {
    type Output = T;
    type JsValue = T;

    fn compute(&mut self) -> Result<T> {
        let job = self.job.take().ok_or_else(|| Error::from_reason("task ran twice"))?;
        let mut client = self.client.lock().map_err(|_| Error::from_reason("ipset client poisoned by a panic"))?;
        job(&mut client).map_err(to_js_error)
    }

    fn resolve(&mut self, _env: Env, output: T) -> Result<T> {
        Ok(output)
    }
}

/// Opening the socket and negotiating the protocol are kernel calls too.
pub struct OpenTask {
    netns: Option<PathBuf>,
}

impl Task for OpenTask {
    type Output = IpsetClient;
    type JsValue = NativeIpset;

    fn compute(&mut self) -> Result<IpsetClient> {
        IpsetClient::open(self.netns.as_deref()).map_err(to_js_error)
    }

    fn resolve(&mut self, _env: Env, client: IpsetClient) -> Result<NativeIpset> {
        let protocol = client.protocol() as u32;
        Ok(NativeIpset { client: Arc::new(Mutex::new(client)), protocol })
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
        AsyncTask::new(ClientTask { client: self.client.clone(), job: Some(Box::new(f)) })
    }

    /// Opens a client; `netns` is a namespace path such as /var/run/netns/X or /proc/PID/ns/net.
    #[napi(ts_return_type = "Promise<NativeIpset>")]
    pub fn open(netns: Option<String>) -> AsyncTask<OpenTask> {
        AsyncTask::new(OpenTask { netns: netns.map(PathBuf::from) })
    }

    #[napi(getter)]
    pub fn protocol(&self) -> u32 {
        self.protocol
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
            let joined = members.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("\n");
            Ok(JsSetContents { header: header_to_js(h), members: joined })
        })
    }

    /// `members` is newline-joined (see the module comment).
    #[napi(ts_return_type = "Promise<JsBatchResult>")]
    pub fn add(&self, name: String, members: String, exist: bool) -> AsyncTask<ClientTask<JsBatchResult>> {
        self.run(move |c| c.add(&name, &split_members(&members), exist).map(batch_to_js))
    }

    #[napi(ts_return_type = "Promise<JsBatchResult>")]
    pub fn del(&self, name: String, members: String, exist: bool) -> AsyncTask<ClientTask<JsBatchResult>> {
        self.run(move |c| c.del(&name, &split_members(&members), exist).map(batch_to_js))
    }

    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn test(&self, name: String, member: String) -> AsyncTask<ClientTask<bool>> {
        self.run(move |c| c.test(&name, &member))
    }

    /// `strategy`: "auto" (default), or "inplace" / "swap" to force one (for measurements).
    #[napi(ts_return_type = "Promise<JsSyncResult>")]
    pub fn sync_set(&self, name: String, spec: JsSetSpec, members: String, strategy: Option<String>) -> AsyncTask<ClientTask<JsSyncResult>> {
        self.run(move |c| {
            let spec = spec_from_js(&name, &spec)?;
            let strategy = match strategy.as_deref() {
                None | Some("auto") => SyncStrategy::Auto,
                Some("inplace") => SyncStrategy::InPlace,
                Some("swap") => SyncStrategy::Swap,
                Some(other) => return Err(IpsetError::new(ErrorCode::InvalidSpec, format!("unknown sync strategy {other:?}")).set(&name)),
            };
            let r = c.sync_set_with(&name, &spec, &split_members(&members), strategy)?;
            Ok(JsSyncResult { created: r.created, added: r.added as u32, removed: r.removed as u32, swapped: r.swapped, nanos: r.nanos as f64 })
        })
    }

    #[napi(ts_return_type = "Promise<JsReconcileResult>")]
    pub fn reconcile(&self, name: String) -> AsyncTask<ClientTask<JsReconcileResult>> {
        self.run(move |c| {
            let r = c.reconcile(&name)?;
            Ok(JsReconcileResult { added: r.added as u32, removed: r.removed as u32, repaired: r.repaired })
        })
    }
}

fn batch_to_js(r: sg_agent_core::ipset::BatchResult) -> JsBatchResult {
    JsBatchResult {
        applied: r.applied as u32,
        failed: r
            .failed
            .into_iter()
            .map(|f| JsFailedMember { member: f.member, code: f.error.code.as_str().into(), message: f.error.message })
            .collect(),
    }
}

/// For the `native.diff100k` benchmark: the pure Rust diff of two newline-joined lists, timed in Rust.
#[napi(ts_return_type = "Promise<JsDiffMeasure>")]
pub fn measure_diff(current: String, desired: String) -> AsyncTask<DiffTask> {
    AsyncTask::new(DiffTask { current, desired })
}

pub struct DiffTask {
    current: String,
    desired: String,
}

impl Task for DiffTask {
    type Output = JsDiffMeasure;
    type JsValue = JsDiffMeasure;

    fn compute(&mut self) -> Result<JsDiffMeasure> {
        let a: MemberSet = parse_members("bench", None, &split_members(&self.current)).map_err(to_js_error)?;
        let b: MemberSet = parse_members("bench", None, &split_members(&self.desired)).map_err(to_js_error)?;
        let started = Instant::now();
        let d = diff_members(&a, &b);
        let nanos = started.elapsed().as_nanos() as f64;
        Ok(JsDiffMeasure { add: d.add.len() as u32, del: d.del.len() as u32, nanos })
    }

    fn resolve(&mut self, _env: Env, output: JsDiffMeasure) -> Result<JsDiffMeasure> {
        Ok(output)
    }
}

/// The kernel's ipset protocol (7, or 6), asked with no other side effect.
#[napi(ts_return_type = "Promise<number>")]
pub fn ipset_protocol(netns: Option<String>) -> AsyncTask<ProbeTask> {
    AsyncTask::new(ProbeTask { netns: netns.map(PathBuf::from) })
}

pub struct ProbeTask {
    netns: Option<PathBuf>,
}

impl Task for ProbeTask {
    type Output = u32;
    type JsValue = u32;

    fn compute(&mut self) -> Result<u32> {
        IpsetClient::probe_protocol(self.netns.as_deref()).map(u32::from).map_err(to_js_error)
    }

    fn resolve(&mut self, _env: Env, output: u32) -> Result<u32> {
        Ok(output)
    }
}
