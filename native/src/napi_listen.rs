//! Listeners of the kernel's events, each on a thread of its own that hands batches to a JS
//! callback as JSON text (a weak threadsafe function: it keeps no process alive): nf_tables trace
//! events (`NativeTraceListener`, for `sg-agent trace`), logged packets (`NativeNflogListener`,
//! for security-group logging) and devices changed (`NativeLinkWatch`, for the iptables backend's
//! conntrack zones).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;

use sg_agent_core::conntrack::LinkWatch;
use sg_agent_core::error::{SysCode, SysError};
use sg_agent_core::nflog::NflogListener;
use sg_agent_core::nftables::TraceListener;

use crate::js_error::Coded;
use crate::task::{work, work_then, Work};

/// `{"events": [...]}` or `{"error": "<why>"}`.
type Callback = ThreadsafeFunction<String, (), String, Status, false, true>;

/// A listener's two callbacks into JS: each batch as `{"<key>": [...]}`, a failure as
/// `{"error": "<why>"}`, both on the one threadsafe function.
fn to_js<T: serde::Serialize>(cb: Arc<Callback>, key: &'static str) -> (impl Fn(T) + Send + 'static, impl Fn(String) + Send + 'static) {
    let errors = cb.clone();
    (
        move |batch: T| {
            let mut text = serde_json::Map::new();
            text.insert(key.to_owned(), serde_json::json!(batch));
            cb.call(serde_json::Value::Object(text).to_string(), ThreadsafeFunctionCallMode::NonBlocking);
        },
        move |error: String| {
            errors.call(serde_json::json!({ "error": error }).to_string(), ThreadsafeFunctionCallMode::NonBlocking);
        },
    )
}

/// Stops a listener once (its thread joined, off the JS thread); later calls find none.
fn stop_task<L: Send + 'static>(inner: &Arc<Mutex<Option<L>>>, stop: fn(&mut L)) -> AsyncTask<Work<(), ()>> {
    let inner = inner.clone();
    work(move || {
        if let Ok(mut g) = inner.lock() {
            if let Some(mut l) = g.take() {
                stop(&mut l);
            }
        }
        Ok::<(), Coded>(())
    })
}

#[napi]
pub struct NativeTraceListener {
    inner: Arc<Mutex<Option<TraceListener>>>,
}

#[napi]
impl NativeTraceListener {
    /// Starts hearing the trace events of the namespace at `netns` (or this one); `onEvents` receives
    /// each batch as JSON text.
    #[napi(ts_args_type = "netns: string | null, onEvents: (batch: string) => void", ts_return_type = "Promise<NativeTraceListener>")]
    pub fn start(netns: Option<String>, on_events: Callback) -> AsyncTask<Work<TraceListener, NativeTraceListener>> {
        let at = netns.map(PathBuf::from);
        let cb = Arc::new(on_events);
        work_then(
            move || {
                let (on_events, on_error) = to_js(cb, "events");
                TraceListener::start(at.as_deref(), on_events, on_error)
            },
            |l| NativeTraceListener { inner: Arc::new(Mutex::new(Some(l))) },
        )
    }

    /// Stops listening (once the thread is gone).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn stop(&self) -> AsyncTask<Work<(), ()>> {
        stop_task(&self.inner, TraceListener::stop)
    }
}

/// Reads a log group (nfnetlink_log) on a thread of its own: `{"packets": [...]}` or
/// `{"error": "<why>"}` batches to a JS callback.
#[napi]
pub struct NativeNflogListener {
    inner: Arc<Mutex<Option<NflogListener>>>,
}

#[napi]
impl NativeNflogListener {
    /// Binds log group `group` in the namespace at `netns` (or this one), copying up to `copyRange`
    /// bytes of each packet; `onPackets` receives each batch as JSON text. Rejects with
    /// NFLOG_FAILED when the group cannot be had (EBUSY: another socket holds it).
    #[napi(
        ts_args_type = "netns: string | null, group: number, copyRange: number, onPackets: (batch: string) => void",
        ts_return_type = "Promise<NativeNflogListener>"
    )]
    pub fn start(
        netns: Option<String>,
        group: u32,
        copy_range: u32,
        on_packets: Callback,
    ) -> AsyncTask<Work<NflogListener, NativeNflogListener>> {
        let at = netns.map(PathBuf::from);
        let cb = Arc::new(on_packets);
        work_then(
            move || {
                let group = u16::try_from(group).map_err(|_| SysError::new(SysCode::InvalidArgument, "a log group is 0 to 65535"))?;
                let (on_packets, on_error) = to_js(cb, "packets");
                NflogListener::start(at.as_deref(), group, copy_range, on_packets, on_error)
            },
            |l| NativeNflogListener { inner: Arc::new(Mutex::new(Some(l))) },
        )
    }

    /// Stops reading (once the thread is gone); the kernel unbinds the group with the socket.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn stop(&self) -> AsyncTask<Work<(), ()>> {
        stop_task(&self.inner, NflogListener::stop)
    }
}

/// Hears devices made, renamed and removed in a namespace (RTNLGRP_LINK) on a thread of its own:
/// `{"changed": true}` once per burst of changes, or `{"error": "<why>"}`.
#[napi]
pub struct NativeLinkWatch {
    inner: Arc<Mutex<Option<LinkWatch>>>,
}

#[napi]
impl NativeLinkWatch {
    /// Starts hearing the devices of the namespace at `netns` (or this one) of the rtnetlink kinds
    /// `kinds` (every device when empty). Rejects with NETNS_UNAVAILABLE or CONNTRACK_FAILED.
    #[napi(
        ts_args_type = "netns: string | null, kinds: string[], onChange: (batch: string) => void",
        ts_return_type = "Promise<NativeLinkWatch>"
    )]
    pub fn start(netns: Option<String>, kinds: Vec<String>, on_change: Callback) -> AsyncTask<Work<LinkWatch, NativeLinkWatch>> {
        let at = netns.map(PathBuf::from);
        let cb = Arc::new(on_change);
        work_then(
            move || {
                let (on_change, on_error) = to_js(cb, "changed");
                LinkWatch::start(at.as_deref(), kinds, move || on_change(true), on_error)
            },
            |w| NativeLinkWatch { inner: Arc::new(Mutex::new(Some(w))) },
        )
    }

    /// Stops hearing (once the thread is gone).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn stop(&self) -> AsyncTask<Work<(), ()>> {
        stop_task(&self.inner, LinkWatch::stop)
    }
}
