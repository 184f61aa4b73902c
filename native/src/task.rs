//! Work on the libuv pool, for every part of the addon: a job runs off the JS thread, its output is
//! handed back as the promise's value, and a failure is kept as its `Coded` error until `reject`
//! makes the JS error on the JS thread (js_error.rs). Two shapes cover every call: `Work`, a job
//! of its own (opening a client, a probe, a tool run), and `OnClient`, a call on a client its handle
//! shares (one socket and one mirror, so calls are serialised by the client's mutex).

use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi::{Env, Task};

use crate::js_error::{Coded, Failure};

/// What runs on the pool: a job of its own, or a call on a client.
type Job<T> = Box<dyn FnOnce() -> std::result::Result<T, Coded> + Send>;
type ClientJob<C, T> = Box<dyn FnOnce(&mut C) -> std::result::Result<T, Coded> + Send>;

/// A job of its own, and what turns its output into the JS value.
pub struct Work<T: Send + 'static, V> {
    job: Option<Job<T>>,
    finish: Option<Box<dyn FnOnce(T) -> V + Send>>,
    failure: Failure,
}

/// `job` on the pool; its output is the promise's value.
pub fn work<T, E>(job: impl FnOnce() -> std::result::Result<T, E> + Send + 'static) -> AsyncTask<Work<T, T>>
where
    T: Send + ToNapiValue + TypeName + 'static,
    E: Into<Coded>,
{
    work_then(job, |t| t)
}

/// `job` on the pool; `finish`, back on the JS thread, makes the promise's value of its output.
pub fn work_then<T, V, E>(
    job: impl FnOnce() -> std::result::Result<T, E> + Send + 'static,
    finish: impl FnOnce(T) -> V + Send + 'static,
) -> AsyncTask<Work<T, V>>
where
    T: Send + 'static,
    V: ToNapiValue + TypeName,
    E: Into<Coded>,
{
    AsyncTask::new(Work {
        job: Some(Box::new(move || job().map_err(Into::into))),
        finish: Some(Box::new(finish)),
        failure: Failure::default(),
    })
}

impl<T: Send + 'static, V: ToNapiValue + TypeName> Task for Work<T, V> {
    type Output = T;
    type JsValue = V;

    fn compute(&mut self) -> Result<T> {
        let job = self.job.take().ok_or_else(|| Error::from_reason("task ran twice"))?;
        job().map_err(|e| self.failure.keep(e))
    }

    fn resolve(&mut self, _env: Env, output: T) -> Result<V> {
        let finish = self.finish.take().ok_or_else(|| Error::from_reason("task resolved twice"))?;
        Ok(finish(output))
    }

    fn reject(&mut self, env: Env, err: Error) -> Result<V> {
        self.failure.reject(&env, err)
    }
}

/// A client its handle's calls share; `None` once it is closed (its socket gone), which every later
/// call reports.
pub type Shared<C> = Arc<Mutex<Option<C>>>;

pub fn shared<C>(client: C) -> Shared<C> {
    Arc::new(Mutex::new(Some(client)))
}

/// One call on a shared client.
pub struct OnClient<C: Send + 'static, T: Send + 'static> {
    client: Shared<C>,
    job: Option<ClientJob<C, T>>,
    /// The error of a call on a closed client.
    closed: fn() -> Coded,
    failure: Failure,
}

/// `job` on the pool, on the client, once the calls before it are done.
pub fn on_client<C, T, E>(
    client: &Shared<C>,
    closed: fn() -> Coded,
    job: impl FnOnce(&mut C) -> std::result::Result<T, E> + Send + 'static,
) -> AsyncTask<OnClient<C, T>>
where
    C: Send + 'static,
    T: Send + ToNapiValue + TypeName + 'static,
    E: Into<Coded>,
{
    AsyncTask::new(OnClient {
        client: client.clone(),
        job: Some(Box::new(move |c| job(c).map_err(Into::into))),
        closed,
        failure: Failure::default(),
    })
}

impl<C: Send + 'static, T: Send + ToNapiValue + TypeName + 'static> Task for OnClient<C, T> {
    type Output = T;
    type JsValue = T;

    fn compute(&mut self) -> Result<T> {
        let job = self.job.take().ok_or_else(|| Error::from_reason("task ran twice"))?;
        let mut guard = self.client.lock().map_err(|_| Error::from_reason("client poisoned by a panic"))?;
        let Some(client) = guard.as_mut() else {
            return Err(self.failure.keep((self.closed)()));
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

/// Closes a shared client once the calls already made are done (dropping it closes its socket).
pub fn close<C: Send + 'static>(client: &Shared<C>) -> AsyncTask<Work<(), ()>> {
    let client = client.clone();
    work(move || {
        if let Ok(mut guard) = client.lock() {
            guard.take();
        }
        Ok::<(), Coded>(())
    })
}
