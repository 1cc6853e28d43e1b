//! The dealer's books, leases and who may take party 1's half.

use super::*;
use cryptpeft_private_eval::model::OwcModel;
use cryptpeft_private_eval::plan::lower::lower;
use cryptpeft_types::{AdapterSpec, BackboneSpec};

/// A dealer's state with model 5 of a small plan registered by `owner`.
fn registered(owner: Fingerprint) -> Mutex<State> {
    let model = OwcModel::random(
        AdapterSpec::paper(1, 8, 2),
        BackboneSpec::test_small(),
        3,
        1,
    );
    let (plan, _) = lower(&model, Default::default()).unwrap();
    let half_bytes = [Party::Client, Party::Server].map(|p| comm::material_bytes(&plan, p));
    let state = Mutex::new(State::default());
    state.lock().unwrap().models.insert(
        5,
        Model {
            plan,
            masks: ModelMasks { seed: 9 },
            token: 77,
            owner: Some(owner),
            registrant: Registrant::Cert(owner),
            renewed: Instant::now(),
            half_bytes,
            streams: false,
        },
    );
    state
}

#[test]
fn a_half_counts_against_the_cap_until_it_is_written() {
    let state = registered([1u8; 32]);
    let limits = DealerLimits::default();
    let ip: IpAddr = [127, 0, 0, 1].into();
    let d = material(&state, &limits, ip, None, 5, 3, 0, None, &|| false).unwrap();
    let Delivery::Whole(half, sending) = d else {
        panic!("a small plan's half comes whole")
    };
    let st = state.lock().unwrap();
    let m = &st.models[&5];
    // Party 1's half waits; party 0's is being written: both on the books.
    assert_eq!(st.held(), m.half_bytes[1] + half.len() as u64);
    drop(st);
    drop(sending);
    let m1 = state.lock().unwrap().models[&5].half_bytes[1];
    assert_eq!(state.lock().unwrap().held(), m1);
}

#[test]
fn generation_stops_when_the_requester_has_gone() {
    let state = registered([1u8; 32]);
    let limits = DealerLimits::default();
    let ip: IpAddr = [127, 0, 0, 1].into();
    let e = material(&state, &limits, ip, None, 5, 3, 0, None, &|| true)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("left during generation"), "{e}");
    let st = state.lock().unwrap();
    assert_eq!(st.held(), 0, "nothing kept for a session nobody takes");
    assert!(
        st.served.contains_key(&(3, Party::Server)),
        "and its server half is refused"
    );
}

#[test]
fn registrations_past_their_lease_are_dropped() {
    let state = registered([1u8; 32]);
    let mut st = state.lock().unwrap();
    st.sweep(Duration::from_secs(60), Duration::from_secs(3600));
    assert!(st.models.contains_key(&5));
    st.models.get_mut(&5).unwrap().renewed -= Duration::from_secs(10);
    st.sweep(Duration::from_secs(60), Duration::from_secs(5));
    assert!(st.models.is_empty());
}

#[test]
fn party_one_needs_the_owners_certificate_and_token() {
    let (owner, other) = ([1u8; 32], [2u8; 32]);
    let state = registered(owner);
    let limits = DealerLimits::default();
    let ip: IpAddr = [127, 0, 0, 1].into();
    let get = |who, party, token| {
        material(&state, &limits, ip, who, 5, 3, party, token, &|| false).map(|_| ())
    };
    get(None, 0, None).unwrap();
    // A leaked token is not enough, nor the certificate without it.
    for (who, token) in [
        (Some(other), Some(77)),
        (None, Some(77)),
        (Some(owner), Some(78)),
    ] {
        let e = get(who, 1, token).unwrap_err().to_string();
        assert!(e.contains("only to the server that registered it"), "{e}");
    }
    get(Some(owner), 1, Some(77)).unwrap();
}
