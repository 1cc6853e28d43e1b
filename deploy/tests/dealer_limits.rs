//! The dealer cannot be drained or exhausted: oversized plans are refused at
//! registration, pending sessions are capped per client and expire, and concurrent
//! sessions get matching halves (generation runs outside the global lock).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod common;
use common::{dealer, Dealer};

use cryptpeft_deploy::roles::{fetch_material, DealerLimits, Requester, RoleConfig, Server};
use cryptpeft_private_eval::model::OwcModel;
use cryptpeft_private_eval::party::Party;
use cryptpeft_private_eval::plan::lower::lower;
use cryptpeft_private_eval::preprocessing::material::Source;
use cryptpeft_private_eval::transport;
use cryptpeft_types::{AdapterSpec, BackboneSpec};

fn register(d: &Dealer) -> Result<Server, String> {
    let model = OwcModel::random(
        AdapterSpec::paper(1, 8, 2),
        BackboneSpec::test_small(),
        3,
        1,
    );
    let (plan, weights) = lower(&model, Default::default()).unwrap();
    Server::new(plan, &weights, &d.addr, d.config.clone()).map_err(|e| e.to_string())
}

/// The error of a request that must fail.
fn refused<T>(r: Result<T, impl std::fmt::Display>) -> String {
    match r {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn oversized_plans_are_refused_at_registration() {
    let d = dealer(DealerLimits {
        max_session_bytes: 1000,
        ..DealerLimits::default()
    });
    let e = refused(register(&d));
    assert!(
        e.contains("plan refused") && e.contains("more than 1000"),
        "{e}"
    );
    let d = dealer(DealerLimits {
        max_wire_elems: 10,
        ..DealerLimits::default()
    });
    let e = refused(register(&d));
    assert!(
        e.contains("plan refused") && e.contains("more than 10 elements"),
        "{e}"
    );
}

#[test]
fn pending_sessions_are_capped_per_client_and_expire() {
    let limits = DealerLimits {
        max_pending_per_peer: 2,
        ..DealerLimits::default()
    };
    // The cap, with a TTL no test machine outlasts.
    let d = dealer(limits.clone());
    let server = register(&d).unwrap();
    let m = server.model_id();
    let open = |session: u64| {
        fetch_material(
            &d.addr,
            server.plan(),
            m,
            session,
            Requester::Client,
            &d.config,
        )
    };
    open(1).unwrap();
    open(2).unwrap();
    let e = refused(open(3));
    assert!(e.contains("dealer busy"), "{e}");
    // The server takes a half: that session is done and room is back.
    server.material(1).unwrap();
    open(3).unwrap();
    let e = refused(open(3));
    assert!(e.contains("already handed out"), "{e}");
    // The server never gets party 0's half, nor party 1's before the client opened.
    let e = refused(server.material(4));
    assert!(e.contains("the client opens it first"), "{e}");

    // Expiry: a half not fetched within the TTL (counted from when it was ready) is gone.
    let d = dealer(DealerLimits {
        pending_ttl: Duration::from_millis(300),
        ..limits
    });
    let server = register(&d).unwrap();
    let m = server.model_id();
    let open = |session: u64| {
        fetch_material(
            &d.addr,
            server.plan(),
            m,
            session,
            Requester::Client,
            &d.config,
        )
    };
    open(1).unwrap();
    open(2).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    open(4).unwrap();
    let e = refused(server.material(1));
    assert!(e.contains("expired"), "{e}");
}

#[test]
fn concurrent_sessions_get_matching_halves() {
    let d = dealer(DealerLimits::default());
    let server = register(&d).unwrap();
    let m = server.model_id();
    // Sessions of different clients at once; within one, the client opens it first.
    std::thread::scope(|s| {
        let hs: Vec<_> = (10..18u64)
            .map(|session| {
                let (addr, cfg, server) = (&d.addr, &d.config, &server);
                s.spawn(move || {
                    let (mine, _) =
                        fetch_material(addr, server.plan(), m, session, Requester::Client, cfg)
                            .unwrap();
                    [mine, server.material(session).unwrap().0]
                })
            })
            .collect();
        let halves: Vec<_> = hs
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .map(|h| h.binding())
            .collect();
        for pair in halves.chunks(2) {
            assert_eq!(pair[0].session, pair[1].session);
            assert_eq!(
                (pair[0].party, pair[1].party),
                (Party::Client, Party::Server)
            );
            assert_eq!(
                pair[0].pair, pair[1].pair,
                "halves of different generations"
            );
        }
    });
}

#[test]
fn connections_beyond_the_cap_are_told_busy() {
    let d = dealer(DealerLimits {
        max_connections: 2,
        ..DealerLimits::default()
    });
    let idle: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(&d.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let e = refused(register(&d));
    assert!(
        e.contains("dealer busy") && e.contains("2 connections"),
        "{e}"
    );
    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    register(&d).unwrap();
}

#[test]
fn server_sessions_beyond_the_cap_are_told_busy() {
    let d = dealer(DealerLimits::default());
    let spec = AdapterSpec::paper(1, 8, 2);
    let model = OwcModel::random(spec, BackboneSpec::test_small(), 3, 1);
    let (plan, weights) = lower(&model, Default::default()).unwrap();
    let config = RoleConfig {
        max_sessions: 1,
        ..d.config.clone()
    };
    let server = Server::new(plan, &weights, &d.addr, config.clone()).unwrap();
    let l = transport::listen("127.0.0.1:0").unwrap();
    let saddr = l.local_addr().unwrap().to_string();
    let hidden = cryptpeft_private_eval::hidden::random(3, 10, 16, 4);
    let stop = AtomicBool::new(false);
    /// Stops the server however the test ends, so the scope can join it.
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        s.spawn(|| server.serve(l, || stop.load(Ordering::Relaxed)).unwrap());
        let _stop = StopOnDrop(&stop);
        // An idle connection holds the only session.
        let idle = std::net::TcpStream::connect(&saddr).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let e = refused(cryptpeft_deploy::roles::run_client(
            &saddr, &d.addr, &hidden, &config,
        ));
        assert!(e.contains("server busy"), "{e}");
        drop(idle);
        std::thread::sleep(Duration::from_millis(300));
        // Two clients one after the other once the slot is free.
        for _ in 0..2 {
            cryptpeft_deploy::roles::run_client(&saddr, &d.addr, &hidden, &config).unwrap();
        }
    });
}

#[test]
fn pending_material_is_capped_in_bytes() {
    let model = OwcModel::random(
        AdapterSpec::paper(1, 8, 2),
        BackboneSpec::test_small(),
        3,
        1,
    );
    let (plan, _) = lower(&model, Default::default()).unwrap();
    let one = cryptpeft_private_eval::online::comm::offline_bytes(&plan);
    let server_half = cryptpeft_private_eval::online::comm::material_bytes(
        &plan,
        cryptpeft_private_eval::party::Party::Server,
    );
    // Room for one new session while another's server half waits, not for two.
    let d = dealer(DealerLimits {
        max_pending_bytes: one + server_half - 1,
        ..DealerLimits::default()
    });
    let server = register(&d).unwrap();
    let m = server.model_id();
    let open = |session| {
        fetch_material(
            &d.addr,
            server.plan(),
            m,
            session,
            Requester::Client,
            &d.config,
        )
    };
    open(1).unwrap();
    let e = refused(open(2));
    assert!(
        e.contains("dealer busy") && e.contains("of material pending"),
        "{e}"
    );
    // The server takes its half: the session is done and its bytes are free again.
    server.material(1).unwrap();
    open(3).unwrap();
}
