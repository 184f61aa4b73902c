//! Listeners of the kernel's packet events, each on a thread of its own that hands batches to a JS
//! callback as JSON text (a weak threadsafe function: it keeps no process alive): nf_tables trace
//! events (`NativeTraceListener`, for `sg-agent trace`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;

use sg_agent_core::nftables::TraceListener;

use crate::js_error::Coded;
use crate::task::{work, work_then, Work};

/// `{"events": [...]}` or `{"error": "<why>"}`.
type Callback = ThreadsafeFunction<String, (), String, Status, false, true>;

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
                let (a, b) = (cb.clone(), cb);
                TraceListener::start(
                    at.as_deref(),
                    move |events| {
                        a.call(serde_json::json!({ "events": events }).to_string(), ThreadsafeFunctionCallMode::NonBlocking);
                    },
                    move |error| {
                        b.call(serde_json::json!({ "error": error }).to_string(), ThreadsafeFunctionCallMode::NonBlocking);
                    },
                )
            },
            |l| NativeTraceListener { inner: Arc::new(Mutex::new(Some(l))) },
        )
    }

    /// Stops listening (once the thread is gone).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn stop(&self) -> AsyncTask<Work<(), ()>> {
        let inner = self.inner.clone();
        work(move || {
            if let Ok(mut g) = inner.lock() {
                if let Some(mut l) = g.take() {
                    l.stop();
                }
            }
            Ok::<(), Coded>(())
        })
    }
}
