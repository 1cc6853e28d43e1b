//! Transport tests: one thread per party over a socket pair.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use cryptpeft_types::NetworkProfile;

use super::frame::Header;
use super::*;

const T: Duration = Duration::from_secs(5);

fn pair() -> (FramedChannel<UnixStream>, FramedChannel<UnixStream>) {
    memory_pair(NetworkProfile::none(), T)
}

/// A channel end plus the raw socket of its peer, to craft bad frames.
fn raw_peer(max_frame_bytes: u64) -> (FramedChannel<UnixStream>, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    let config = TransportConfig {
        read_timeout: T,
        max_frame_bytes,
        ..Default::default()
    };
    (
        FramedChannel::new(a, 0, NetworkProfile::none(), config).unwrap(),
        b,
    )
}

fn raw_header(len: u32, kind: u8, session: u64) -> [u8; HEADER_LEN] {
    Header {
        len,
        kind,
        session,
        depth: 1,
    }
    .encode()
}

fn custom(mbit: f64, delay_ms: f64) -> NetworkProfile {
    format!("custom:mbit={mbit},delay_ms={delay_ms}")
        .parse()
        .unwrap()
}

#[test]
fn round_trip() {
    let (mut a, mut b) = pair();
    a.send_u64s(MsgKind::Open, &[1, u64::MAX, 3]).unwrap();
    a.send(MsgKind::Hello, b"").unwrap();
    assert_eq!(b.recv_u64s(MsgKind::Open, 3).unwrap(), vec![1, u64::MAX, 3]);
    assert_eq!(b.recv(MsgKind::Hello).unwrap(), Vec::<u8>::new());
}

#[test]
fn request_response_costs_exact_bytes_and_two_rounds() {
    let (mut a, mut b) = pair();
    let server = thread::spawn(move || {
        let req = b.recv_u64s(MsgKind::MaterialRequest, 100).unwrap();
        b.send_u64s(MsgKind::Material, &req[..10]).unwrap();
        b.flush().unwrap();
        b.stats()
    });
    a.send_u64s(MsgKind::MaterialRequest, &[7; 100]).unwrap();
    assert_eq!(a.recv_u64s(MsgKind::Material, 10).unwrap(), vec![7; 10]);
    let (sa, sb) = (a.stats(), server.join().unwrap());
    let expect = Stats {
        bytes_sent: 17 + 800,
        bytes_received: 17 + 80,
        frames_sent: 1,
        frames_received: 1,
        rounds: 2,
    };
    assert_eq!(sa, expect);
    assert_eq!(sb.bytes_sent, expect.bytes_received);
    assert_eq!(sb.bytes_received, expect.bytes_sent);
    assert_eq!(sb.rounds, 2);
}

#[test]
fn simultaneous_exchange_is_one_round_and_reset_restarts_count() {
    let (mut a, mut b) = pair();
    let exchange = |c: &mut FramedChannel<UnixStream>, v: u64| {
        c.send_u64s(MsgKind::Open, &[v; 4]).unwrap();
        c.recv_u64s(MsgKind::Open, 4).unwrap()
    };
    let peer = thread::spawn(move || {
        exchange(&mut b, 2);
        let r1 = b.stats().rounds;
        exchange(&mut b, 2);
        let r2 = b.stats().rounds;
        // Synchronizing exchange, then reset, then request -> response.
        exchange(&mut b, 0);
        b.reset_rounds();
        let x = b.recv_u64s(MsgKind::Reveal, 1).unwrap();
        b.send_u64s(MsgKind::Reveal, &x).unwrap();
        (r1, r2, b.stats())
    });
    assert_eq!(exchange(&mut a, 1), vec![2; 4]);
    assert_eq!(a.stats().rounds, 1);
    let before = a.stats();
    exchange(&mut a, 1);
    assert_eq!((a.stats() - before).rounds, 1);
    assert_eq!((a.stats() - before).bytes_sent, 17 + 32);
    exchange(&mut a, 0);
    a.reset_rounds();
    assert_eq!(a.stats().rounds, 0);
    a.send_u64s(MsgKind::Reveal, &[5]).unwrap();
    a.recv_u64s(MsgKind::Reveal, 1).unwrap();
    let (r1, r2, sb) = peer.join().unwrap();
    assert_eq!((r1, r2), (1, 2));
    assert_eq!(a.stats().rounds, 2);
    assert_eq!(sb.rounds, 2);
    assert_eq!(a.stats().frames_sent, 4);
    assert_eq!(sb.bytes_received, a.stats().bytes_sent);
}

#[test]
fn oversized_length_is_rejected_before_allocation() {
    let (mut a, mut raw) = raw_peer(1 << 20);
    raw.write_all(&raw_header(u32::MAX, MsgKind::Open as u8, 0))
        .unwrap();
    let e = a.recv(MsgKind::Open).unwrap_err();
    assert!(
        matches!(e, TransportError::FrameTooLarge { size, limit } if size == u32::MAX as u64 && limit == 1 << 20)
    );
    let msg = e.to_string();
    assert!(
        msg.contains("4294967295") && msg.contains("1048576"),
        "{msg}"
    );
    // The stream is now mid-frame: the channel refuses further use.
    assert!(matches!(
        a.recv(MsgKind::Open),
        Err(TransportError::Broken(_))
    ));
}

#[test]
fn sending_oversized_payload_is_refused_and_channel_stays_usable() {
    let (mut a, mut raw) = raw_peer(8);
    let e = a.send(MsgKind::Open, &[0; 9]).unwrap_err();
    assert!(
        matches!(e, TransportError::FrameTooLarge { size: 9, limit: 8 }),
        "{e}"
    );
    a.send(MsgKind::Open, &[1; 8]).unwrap();
    a.flush().unwrap();
    let mut buf = [0u8; HEADER_LEN + 8];
    std::io::Read::read_exact(&mut raw, &mut buf).unwrap();
    assert_eq!(&buf[HEADER_LEN..], &[1; 8]);
}

#[test]
fn unknown_kind_byte_is_rejected() {
    let (mut a, mut raw) = raw_peer(1 << 20);
    raw.write_all(&raw_header(0, 42, 0)).unwrap();
    let e = a.recv(MsgKind::Open).unwrap_err();
    assert!(
        matches!(e, TransportError::UnknownKind { byte: 42, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("42"));
}

#[test]
fn wrong_kind_names_expected_and_got() {
    let (mut a, mut b) = pair();
    b.send(MsgKind::Reveal, b"x").unwrap();
    let e = a.recv(MsgKind::Open).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("Open") && msg.contains("Reveal"), "{msg}");
}

#[test]
fn abort_carries_the_peers_reason() {
    let (mut a, mut b) = pair();
    b.abort("adapter spec digest mismatch");
    let e = a.recv(MsgKind::Setup).unwrap_err();
    assert!(matches!(
        e,
        TransportError::PeerAborted {
            expected: MsgKind::Setup,
            ..
        }
    ));
    assert!(
        e.to_string().contains("adapter spec digest mismatch"),
        "{e}"
    );
}

#[test]
fn wrong_session_is_rejected() {
    let (mut a, mut b) = pair();
    b.set_session(7);
    a.set_session(8);
    b.send(MsgKind::Hello, b"hi").unwrap();
    let e = a.recv(MsgKind::Hello).unwrap_err();
    assert!(
        matches!(
            e,
            TransportError::WrongSession {
                expected: 8,
                got: 7
            }
        ),
        "{e}"
    );
}

#[test]
fn wrong_u64_length_names_expected_and_got() {
    let (mut a, mut b) = pair();
    b.send_u64s(MsgKind::Open, &[1, 2]).unwrap();
    let e = a.recv_u64s(MsgKind::Open, 3).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("16 bytes") && msg.contains("3 u64"), "{msg}");
}

#[test]
fn truncated_frame_is_peer_closed() {
    let (mut a, mut raw) = raw_peer(1 << 20);
    raw.write_all(&raw_header(100, MsgKind::Open as u8, 0))
        .unwrap();
    raw.write_all(&[0; 10]).unwrap();
    drop(raw);
    let e = a.recv(MsgKind::Open).unwrap_err();
    assert!(matches!(e, TransportError::PeerClosed { .. }), "{e}");
    assert!(
        e.to_string().contains("100-byte payload of a Open frame"),
        "{e}"
    );
}

#[test]
fn dropped_peer_is_peer_closed_quickly() {
    let (mut a, mut b) = pair();
    let t = Instant::now();
    let peer = thread::spawn(move || {
        b.recv(MsgKind::Hello).unwrap();
        // Dies mid-protocol without answering.
    });
    a.send(MsgKind::Hello, b"").unwrap();
    let e = a.recv(MsgKind::Setup).unwrap_err();
    peer.join().unwrap();
    assert!(matches!(e, TransportError::PeerClosed { .. }), "{e}");
    assert!(e.to_string().contains("header of a Setup frame"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(1));
    // The channel is unusable now, and says why.
    let e = a.send(MsgKind::Open, b"").unwrap_err();
    assert!(e.to_string().contains("peer closed"), "{e}");
}

#[test]
fn write_error_in_the_writer_thread_surfaces_on_the_next_call() {
    let (mut a, b) = pair();
    drop(b);
    a.send(MsgKind::Open, &[0; 1024]).unwrap(); // queued; the write fails later
    let e = a.flush().unwrap_err();
    assert!(matches!(e, TransportError::PeerClosed { .. }), "{e}");
    assert!(e.to_string().contains("sending a Open frame"), "{e}");
    let again = a.recv(MsgKind::Open).unwrap_err();
    assert!(matches!(again, TransportError::Broken(_)), "{again}");
}

#[test]
fn silent_peer_times_out_within_the_configured_timeout() {
    let timeout = Duration::from_millis(200);
    let (mut a, _b) = memory_pair(NetworkProfile::none(), timeout);
    let t = Instant::now();
    let e = a.recv(MsgKind::Reveal).unwrap_err();
    let waited = t.elapsed();
    assert!(
        matches!(
            e,
            TransportError::Timeout {
                expected: MsgKind::Reveal,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("200ms"), "{e}");
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(1),
        "{waited:?}"
    );
}

#[test]
fn drop_delivers_pending_frames() {
    let (mut a, mut b) = memory_pair(custom(100.0, 30.0), T);
    a.send_u64s(MsgKind::Reveal, &[42; 1000]).unwrap();
    drop(a); // the frame is still in the shaping queue
    assert_eq!(b.recv_u64s(MsgKind::Reveal, 1000).unwrap(), vec![42; 1000]);
    let e = b.recv(MsgKind::Reveal).unwrap_err();
    assert!(matches!(e, TransportError::PeerClosed { .. }), "{e}");
}

#[test]
fn close_flushes_and_signals_eof() {
    let (mut a, mut b) = pair();
    a.send(MsgKind::Open, b"last").unwrap();
    a.close().unwrap();
    assert_eq!(b.recv(MsgKind::Open).unwrap(), b"last");
    assert!(matches!(
        b.recv(MsgKind::Open),
        Err(TransportError::PeerClosed { .. })
    ));
}

#[test]
fn shaping_applies_bandwidth_and_delay() {
    // 1 MB at 80 Mbit/s is 0.1 s on the wire, plus 20 ms one way.
    let (mut a, mut b) = memory_pair(custom(80.0, 20.0), T);
    let payload = vec![0xAB; 1_000_000];
    let t = Instant::now();
    a.send(MsgKind::Material, &payload).unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(20),
        "send must not block"
    );
    assert_eq!(b.recv(MsgKind::Material).unwrap().len(), payload.len());
    let took = t.elapsed().as_secs_f64();
    let expect = 0.1 + 0.02 + 17.0 * 8.0 / 80e6;
    assert!(took >= expect && took < expect + 0.2, "{took}");
}

#[test]
fn shaped_ping_pong_pays_one_delay_per_message() {
    let (mut a, mut b) = memory_pair(custom(80.0, 20.0), T);
    let t = Instant::now();
    let peer = thread::spawn(move || {
        for _ in 0..2 {
            let x = b.recv_u64s(MsgKind::Open, 1).unwrap();
            b.send_u64s(MsgKind::Open, &x).unwrap();
        }
        b.recv_u64s(MsgKind::Open, 1).unwrap(); // 5th message
        (t.elapsed().as_secs_f64(), b.stats().rounds)
    });
    for i in 0..2 {
        a.send_u64s(MsgKind::Open, &[i]).unwrap();
        a.recv_u64s(MsgKind::Open, 1).unwrap();
    }
    a.send_u64s(MsgKind::Open, &[9]).unwrap();
    let (took, rounds) = peer.join().unwrap();
    assert!((0.1..0.3).contains(&took), "{took}");
    assert_eq!(rounds, 5);
    assert_eq!(a.stats().rounds, 5);
}

#[test]
fn shaped_simultaneous_sends_overlap_like_full_duplex() {
    let (mut a, mut b) = memory_pair(custom(80.0, 20.0), T);
    // 100 ms each way: full duplex takes 0.12 s, a shared link 0.22 s.
    let payload = vec![1u8; 1_000_000];
    let p2 = payload.clone();
    let t = Instant::now();
    let peer = thread::spawn(move || {
        b.send(MsgKind::Open, &p2).unwrap();
        b.recv(MsgKind::Open).unwrap().len()
    });
    a.send(MsgKind::Open, &payload).unwrap();
    assert_eq!(a.recv(MsgKind::Open).unwrap().len(), payload.len());
    assert_eq!(peer.join().unwrap(), payload.len());
    let took = t.elapsed().as_secs_f64();
    assert!(
        (0.07..0.15).contains(&took),
        "{took}: both directions in parallel, not 0.14 s"
    );
    assert_eq!(a.stats().rounds, 1);
}

#[test]
fn tcp_connect_retries_until_the_listener_appears() {
    // Find a free port, then start the client before anyone listens.
    let port = listen("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let client_addr = addr.clone();
    let client = thread::spawn(move || {
        let mut c = connect(
            &client_addr,
            5,
            NetworkProfile::none(),
            TransportConfig::default(),
            Duration::from_secs(3),
        )
        .unwrap();
        c.send_u64s(MsgKind::Hello, &[1, 2]).unwrap();
        c.recv_u64s(MsgKind::Hello, 1).unwrap()
    });
    thread::sleep(Duration::from_millis(150));
    let listener = listen(&addr).unwrap();
    let mut s = accept(
        &listener,
        5,
        NetworkProfile::lan(),
        TransportConfig::default(),
        Duration::from_secs(3),
    )
    .unwrap();
    let v = s.recv_u64s(MsgKind::Hello, 2).unwrap();
    s.send_u64s(MsgKind::Hello, &[v[0] + v[1]]).unwrap();
    assert_eq!(client.join().unwrap(), vec![3]);
    assert_eq!(s.stats().bytes_received, 17 + 16);
}

#[test]
fn connect_and_accept_give_up_with_clear_errors() {
    let port = listen("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let e = connect(
        &addr,
        0,
        NetworkProfile::none(),
        TransportConfig::default(),
        Duration::from_millis(100),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains(&addr), "{e}");
    let listener = listen("127.0.0.1:0").unwrap();
    let e = accept(
        &listener,
        0,
        NetworkProfile::none(),
        TransportConfig::default(),
        Duration::from_millis(50),
    )
    .err()
    .unwrap();
    assert!(matches!(e, TransportError::AcceptTimeout { .. }), "{e}");
}

#[test]
fn lan_delay_is_accurate_over_many_small_rounds() {
    // 200 sequential messages at 0.5 ms one way: 0.1 s of pure delay; sleep
    // overshoot and thread hand-offs must stay well below that.
    let (mut a, mut b) = memory_pair(NetworkProfile::lan(), T);
    let t = Instant::now();
    let peer = thread::spawn(move || {
        for _ in 0..100 {
            let x = b.recv_u64s(MsgKind::Open, 1).unwrap();
            b.send_u64s(MsgKind::Open, &x).unwrap();
        }
        b.flush().unwrap();
    });
    for i in 0..100 {
        a.send_u64s(MsgKind::Open, &[i]).unwrap();
        a.recv_u64s(MsgKind::Open, 1).unwrap();
    }
    let took = t.elapsed().as_secs_f64();
    peer.join().unwrap();
    eprintln!("200 LAN messages: {took:.4} s");
    // Idle machine: ~0.11 s; two busy loops on both cores: ~0.125 s.
    assert!((0.1..0.3).contains(&took), "{took}");
    assert_eq!(a.stats().rounds, 200);
}

#[test]
fn a_trickling_sender_is_cut_off_at_the_frame_deadline() {
    let (a, mut b) = UnixStream::pair().unwrap();
    let config = TransportConfig {
        read_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let mut chan = FramedChannel::new(a, 0, NetworkProfile::none(), config).unwrap();
    // One byte every 100 ms: each read succeeds well within the idle timeout.
    let trickle = thread::spawn(move || {
        for byte in raw_header(4, MsgKind::Hello as u8, 0) {
            if b.write_all(&[byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let t = Instant::now();
    let e = chan.recv(MsgKind::Hello).unwrap_err();
    assert!(matches!(e, TransportError::Timeout { .. }), "{e}");
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    trickle.join().unwrap();
}

#[test]
fn a_reader_that_stops_taking_fails_the_writer_within_the_frame_budget() {
    let (a, _b) = UnixStream::pair().unwrap();
    let config = TransportConfig {
        read_timeout: Duration::from_millis(200),
        min_rate: 64 << 20,
        ..Default::default()
    };
    let mut chan = FramedChannel::new(a, 0, NetworkProfile::none(), config).unwrap();
    // Far more than the socket buffers hold; the peer never reads.
    chan.send(MsgKind::Open, &vec![0u8; 8 << 20]).unwrap();
    let t = Instant::now();
    let e = chan.flush().unwrap_err().to_string();
    assert!(e.contains("did not take it within"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn limits_per_kind_apply_before_allocation() {
    let (mut chan, mut raw) = raw_peer(1 << 20);
    chan.limit(MsgKind::Hello, 64);
    raw.write_all(&raw_header(65, MsgKind::Hello as u8, 0))
        .unwrap();
    let e = chan.recv(MsgKind::Hello).unwrap_err();
    assert!(
        matches!(
            e,
            TransportError::FrameTooLarge {
                size: 65,
                limit: 64
            }
        ),
        "{e}"
    );
}

#[test]
fn abort_reasons_are_escaped_and_bounded() {
    let (mut chan, mut raw) = raw_peer(1 << 20);
    let reason = b"bye\n2026-12-03 ERROR forged line\x1b[31m";
    raw.write_all(&raw_header(reason.len() as u32, MsgKind::Abort as u8, 0))
        .unwrap();
    raw.write_all(reason).unwrap();
    let e = chan.recv(MsgKind::Hello).unwrap_err().to_string();
    assert!(!e.contains('\n') && !e.contains('\x1b'), "{e:?}");
    assert!(e.contains("bye\\n2026"), "{e}");
    // Longer than the bound: refused unread.
    let (mut chan, mut raw) = raw_peer(1 << 20);
    raw.write_all(&raw_header(
        MAX_ABORT_BYTES as u32 + 1,
        MsgKind::Abort as u8,
        0,
    ))
    .unwrap();
    let e = chan.recv(MsgKind::Hello).unwrap_err();
    assert!(matches!(e, TransportError::FrameTooLarge { .. }), "{e}");
}
