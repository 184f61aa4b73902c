//! The one way an addon error reaches JS: a real `Error` whose `code` property is the stable code
//! (`SET_NOT_FOUND`, `CONNTRACK_FAILED`, …) and whose other properties carry what the caller needs
//! (`setName`, `member`, `errno`). No JSON in messages; `src/addon/errors.ts` maps by `code` alone.
//!
//! A `Task` computes off the JS thread, where no JS value can be made, so a failed task keeps its
//! `Coded` error and turns it into the JS error in `reject`, back on the JS thread (`Failure`).

use napi::bindgen_prelude::*;
use napi::{Env, Error, Status};
use napi_derive::napi;
use sg_agent_core::error::{SysCode, SysError};
use sg_agent_core::ipset::{ErrorCode, IpsetError};

#[napi(object)]
pub struct JsErrorCodes {
    pub ipset: Vec<String>,
    pub other: Vec<String>,
}

/// Every code an addon error can carry: the ipset client's and the other parts' (a code may be in
/// both). src/addon/errors.ts and the docs are checked against these.
#[napi]
pub fn error_codes() -> JsErrorCodes {
    JsErrorCodes {
        ipset: ErrorCode::ALL.iter().map(|c| c.as_str().to_string()).collect(),
        other: SysCode::ALL.iter().map(|c| c.as_str().to_string()).collect(),
    }
}

#[derive(Debug, Clone)]
pub struct Coded {
    pub code: &'static str,
    pub message: String,
    pub set: Option<String>,
    pub member: Option<String>,
    pub errno: Option<i32>,
}

impl From<IpsetError> for Coded {
    fn from(e: IpsetError) -> Self {
        Coded { code: e.code.as_str(), message: e.message, set: e.set, member: e.member, errno: e.errno }
    }
}

impl From<SysError> for Coded {
    fn from(e: SysError) -> Self {
        Coded { code: e.code.as_str(), message: e.message, set: None, member: None, errno: e.errno }
    }
}

impl Coded {
    /// The JS error (or, if even making it failed, the plain error saying why).
    pub fn into_js(self, env: &Env) -> Error {
        self.build(env).unwrap_or_else(|e| e)
    }

    fn build(self, env: &Env) -> Result<Error> {
        let mut obj = env.create_error(Error::new(Status::GenericFailure, self.message))?;
        obj.set_named_property("code", self.code)?;
        if let Some(s) = self.set {
            obj.set_named_property("setName", s)?;
        }
        if let Some(m) = self.member {
            obj.set_named_property("member", m)?;
        }
        if let Some(n) = self.errno {
            obj.set_named_property("errno", n)?;
        }
        Ok(Error::from(obj.into_unknown(env)?))
    }
}

/// The error a task keeps between `compute` (off the JS thread) and `reject` (on it).
#[derive(Default)]
pub struct Failure(Option<Coded>);

impl Failure {
    /// Keeps `e` for `reject` and returns the placeholder `compute` fails with.
    pub fn keep(&mut self, e: impl Into<Coded>) -> Error {
        let c = e.into();
        let placeholder = Error::new(Status::GenericFailure, format!("{}: {}", c.code, c.message));
        self.0 = Some(c);
        placeholder
    }

    /// In `reject`: the kept error as a JS error (or `err` when nothing was kept, e.g. a panic).
    pub fn reject<T>(&mut self, env: &Env, err: Error) -> Result<T> {
        Err(match self.0.take() {
            Some(c) => c.into_js(env),
            None => err,
        })
    }
}
