//! Material that streams from the dealer during the online phase (what LoRA and
//! AdaptFormer need at ViT-B/16, whose halves exceed memory): forced here on tiny
//! plans by a dealer that streams everything. The logits are the plaintext model's,
//! and a server that never takes its half ends the session with an error, not a hang.

use cryptpeft_private_eval::arith::tensor::max_abs_diff;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod common;
use common::{dealer, Dealer};

use cryptpeft_deploy::roles::{self, fetch_material, DealerLimits, Requester, Server};
use cryptpeft_private_eval::baseline::{Baseline, BaselineModel};
use cryptpeft_private_eval::preprocessing::material::Source;
use cryptpeft_private_eval::{hidden, reference, transport};
use cryptpeft_types::BackboneSpec;

/// A dealer streaming every plan.
fn streaming_dealer(pending_ttl: Duration) -> Dealer {
    dealer(DealerLimits {
        stream_above: 0,
        pending_ttl,
        ..DealerLimits::default()
    })
}

#[test]
fn streamed_material_gives_the_plaintext_logits() {
    let d = streaming_dealer(Duration::from_secs(60));
    let bb = BackboneSpec::test_small();
    for (kind, seed) in [(Baseline::Lora, 3), (Baseline::AdaptFormer(8), 4)] {
        let m = BaselineModel::random(kind, bb.clone(), 5, seed).unwrap();
        let (plan, w) = m.lower(Default::default()).unwrap();
        let x = hidden::random(1, bb.tokens(), bb.hidden_dim, seed);
        let want = reference::layers_forward(&m.layers, bb.heads, &m.final_norm, &m.head, &x[0]);
        let server = Server::new(plan, &w, &d.addr, d.config.clone()).unwrap();
        let l = transport::listen("127.0.0.1:0").unwrap();
        let saddr = l.local_addr().unwrap().to_string();
        let stop = AtomicBool::new(false);
        let report = std::thread::scope(|s| {
            let serving = s.spawn(|| server.serve(l, || stop.load(Ordering::Relaxed)));
            let r = (0..2)
                .map(|_| roles::run_client(&saddr, &d.addr, &x, &d.config))
                .collect::<Result<Vec<_>, _>>();
            stop.store(true, Ordering::Relaxed);
            serving.join().unwrap().unwrap();
            r.unwrap()
        });
        for r in &report {
            assert!(r.streamed, "{kind}: the dealer was to stream");
            let err = max_abs_diff(&want, &r.logits);
            assert!(err <= 1e-2, "{kind}: max |logit error| {err}");
            // The whole half came, in frames, during the online phase.
            let half = cryptpeft_private_eval::online::comm::material_bytes(
                server.plan(),
                cryptpeft_private_eval::party::Party::Client,
            );
            assert!(
                r.offline_bytes > half,
                "{kind}: {} bytes of {half}",
                r.offline_bytes
            );
        }
    }
}

#[test]
fn a_half_left_untaken_ends_the_session_with_an_error() {
    let d = streaming_dealer(Duration::from_millis(300));
    let bb = BackboneSpec::test_small();
    let m = BaselineModel::random(Baseline::Lora, bb, 5, 9).unwrap();
    let (plan, w) = m.lower(Default::default()).unwrap();
    let server = Server::new(plan, &w, &d.addr, d.config.clone()).unwrap();
    // The client opens a streamed session; the server never asks for its half, so the
    // dealer's pipe fills and it gives the session up.
    let (mut half, _) = fetch_material(
        &d.addr,
        server.plan(),
        server.model_id(),
        5,
        Requester::Client,
        &d.config,
    )
    .unwrap();
    let plan = server.plan();
    let e = (0..plan.steps.len())
        .find_map(|_| half.next_step(plan).err())
        .expect("the stream must break off");
    assert!(e.0.contains("stopped taking its material"), "{e}");
    let late = server.material(5).unwrap_err().to_string();
    assert!(late.contains("expired"), "{late}");
}
