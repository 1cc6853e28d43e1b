//! A dealer on loopback for the tests, with the limits under test.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cryptpeft_deploy::roles::{DealerLimits, RoleConfig};
use cryptpeft_private_eval::transport;

/// A running dealer; it stops taking connections when dropped.
pub struct Dealer {
    pub addr: String,
    stop: Arc<AtomicBool>,
    pub config: RoleConfig,
}

impl Drop for Dealer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub fn dealer(limits: DealerLimits) -> Dealer {
    let l = transport::listen("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let config = RoleConfig {
        dealer: limits,
        security: cryptpeft_deploy::security::Security::Insecure,
        ..RoleConfig::default()
    };
    let (st, cfg) = (stop.clone(), config.clone());
    std::thread::spawn(move || {
        cryptpeft_deploy::dealer_service::run_dealer(l, cfg, || st.load(Ordering::Relaxed))
    });
    Dealer { addr, stop, config }
}
