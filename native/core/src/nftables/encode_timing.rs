//! What a binding's transaction costs the addon before the kernel sees it: its operations decoded
//! from JSON, built into requests against the mirror, and encoded as netlink messages. A timing,
//! not a check, so it is ignored unless asked for (bench/RESULTS.md, "Where one agent's storm CPU
//! goes now"):
//!
//!   cargo test --release -p sg-agent-core --lib encode_timing -- --ignored --nocapture
//!
//! The operations are the nftables backend's own, recorded from a namespace: the first apply of a
//! host with one port (`binding-before.json`), then the binding of a second port with one member
//! added (`binding.json`).

use std::hint::black_box;
use std::time::Instant;

use super::client::NftClient;
use super::model::ModelKernel;
use super::spec::Op;
use crate::netlink::{request, NfGenMsg};

const BEFORE: &str = include_str!("testdata/binding-before.json");
const BINDING: &str = include_str!("testdata/binding.json");
const REPS: usize = 3000;

#[test]
#[ignore]
fn encode_timing() {
    let t = Instant::now();
    for _ in 0..REPS {
        black_box(serde_json::from_str::<Vec<Op>>(BINDING).unwrap());
    }
    let decode = t.elapsed();

    let mut client = NftClient::with_kernel(ModelKernel::default(), 1);
    let before: Vec<Op> = serde_json::from_str(BEFORE).unwrap();
    assert!(client.transact(&before).unwrap().committed);
    let ops: Vec<Op> = serde_json::from_str(BINDING).unwrap();
    let mut log = Vec::new();
    let t = Instant::now();
    let built = client.build(&ops, &mut log).unwrap();
    let build = t.elapsed();

    // Each repetition encodes its own copy, as the socket consumes the requests it sends.
    let copies: Vec<Vec<_>> = (0..REPS).map(|_| built.iter().map(|(r, _)| r.clone()).collect()).collect();
    let mut bytes = 0;
    let t = Instant::now();
    for requests in copies {
        for r in requests {
            let mut m = request(NfGenMsg::new(r.family), r.msg, r.flags);
            m.finalize();
            let mut b = vec![0u8; m.buffer_len()];
            m.serialize(&mut b);
            bytes += b.len();
        }
    }
    let encode = t.elapsed();
    let us = |d: std::time::Duration| d.as_secs_f64() * 1e6 / REPS as f64;
    eprintln!(
        "nftables.binding decode={:.1}us build={:.1}us encode={:.1}us ({} operations, {} messages, {} bytes)",
        us(decode),
        build.as_secs_f64() * 1e6,
        us(encode),
        ops.len(),
        built.len(),
        bytes / REPS
    );
}
