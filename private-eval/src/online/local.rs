//! Runs client and server in two threads of this process over any channel pair, with
//! the dealer's material generated in-process: the harness of tests and benchmarks
//! (the deployed roles, `cryptpeft_deploy::roles`, do the same across processes).

use std::time::Instant;

use crate::arith::prg::Prg;
use crate::arith::tensor::Mat;
use crate::online::exec::{self, ClientKeys, ExecError, Keys, ServerKeys, StepTrace};
use crate::plan::{PlanWeights, SecurePlan};
use crate::preprocessing::dealer::{self, ModelMasks};
use crate::preprocessing::material::Material;
use crate::transport::{Channel, Stats};

/// Outcome of one secure inference, measured on the client's channel.
#[derive(Debug, Clone)]
pub struct Inference {
    pub logits: Vec<f64>,
    pub online: Stats,
    pub online_s: f64,
    pub offline_bytes: u64,
    pub offline_s: f64,
    pub steps: Vec<StepTrace>,
}

/// Generates material (seeded, serialized and expanded as it travels between the
/// roles), runs setup (excluded from online figures) and the online phase.
pub fn infer<C: Channel + 'static>(
    plan: &SecurePlan,
    weights: &PlanWeights,
    hidden: &[Mat],
    client_chan: C,
    server_chan: C,
    seed: u128,
) -> Result<Inference, ExecError> {
    let mut get = |k: usize| {
        hidden
            .get(k)
            .cloned()
            .ok_or_else(|| format!("hidden state {k} missing: got {}", hidden.len()))
    };
    infer_with(plan, weights, &mut get, client_chan, server_chan, seed)
}

/// [`infer`] with the client's states from a source asked for each when first needed
/// ([`exec::run_with`]).
pub fn infer_with<C: Channel + 'static>(
    plan: &SecurePlan,
    weights: &PlanWeights,
    hidden: exec::HiddenSource<'_>,
    mut client_chan: C,
    mut server_chan: C,
    seed: u128,
) -> Result<Inference, ExecError> {
    let masks = ModelMasks { seed };
    let t0 = Instant::now();
    let [m0, m1] = dealer::generate(
        plan,
        &masks,
        client_chan.session(),
        &mut Prg::new(seed ^ 0xdea1),
    );
    // As the roles do: each half travels seeded and is expanded by its party.
    let [b0, b1] = [m0.into_bytes(), m1.into_bytes()];
    let offline_bytes = (b0.len() + b1.len()) as u64;
    let expand =
        |b: &[u8]| Material::from_bytes(plan, b).map_err(|e| ExecError::Material(e.to_string()));
    let (m0, m1) = (expand(&b0)?, expand(&b1)?);
    let offline_s = t0.elapsed().as_secs_f64();
    let server_keys = ServerKeys::new(plan, weights, &masks);
    std::thread::scope(|s| {
        let server = s.spawn(move || -> Result<(), ExecError> {
            exec::server_setup(&server_keys, &mut server_chan)?;
            exec::sync(&mut server_chan, m1.binding.pair)?;
            exec::run(plan, Keys::Server(&server_keys), m1, None, &mut server_chan)?;
            server_chan.flush().map_err(ExecError::Setup)?;
            Ok(())
        });
        let client = (|| {
            let keys: ClientKeys = exec::client_setup(plan, &mut client_chan)?;
            exec::sync(&mut client_chan, m0.binding.pair)?;
            let before = client_chan.stats();
            let t = Instant::now();
            let out = exec::run_with(
                plan,
                Keys::Client(&keys),
                m0,
                Some(hidden),
                &mut client_chan,
            )?;
            let online_s = t.elapsed().as_secs_f64();
            Ok(Inference {
                logits: out.logits.unwrap_or_default(),
                online: client_chan.stats() - before,
                online_s,
                offline_bytes,
                offline_s,
                steps: out.steps,
            })
        })();
        let server = server.join().expect("server thread");
        match (client, server) {
            (Ok(c), Ok(())) => Ok(c),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    })
}
