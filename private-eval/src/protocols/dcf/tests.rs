//! Keys evaluate to the comparison they share on small and wide domains, batches to single
//! evaluations, and correction words round-trip.

use super::*;
use crate::arith::prg::Prg;

fn check<G: Group>(alpha: u64, beta: G, bits: usize, xs: &[u64], rng: &mut Prg) {
    let [k0, k1] = gen_keys(alpha, beta, bits, rng);
    let (y0, y1) = (k0.eval_many(xs, bits), k1.eval_many(xs, bits));
    for (j, &x) in xs.iter().enumerate() {
        let want = if x < alpha { beta } else { G::default() };
        assert_eq!(y0[j].add(y1[j]), want, "alpha={alpha} x={x} bits={bits}");
    }
}

fn pair(rng: &mut Prg) -> Pair {
    Pair([rng.next_u64(), rng.next_u64()])
}

#[test]
fn dcf_matches_comparison_everywhere_on_small_domains() {
    let mut rng = Prg::new(42);
    // Below, at and above the leaf width (early termination).
    for bits in [3, 7, 8, 10] {
        let xs: Vec<u64> = (0..1u64 << bits).collect();
        for alpha in (0..1u64 << bits)
            .step_by(bits.max(3) - 2)
            .chain([(1u64 << bits) - 1])
        {
            check(alpha, Bit(true), bits, &xs, &mut rng);
            let beta = pair(&mut rng);
            check(alpha, beta, bits, &xs, &mut rng);
        }
    }
}

#[test]
fn dcf_matches_comparison_on_wide_domains() {
    let mut rng = Prg::new(7);
    for bits in [31, 63] {
        let mask = (1u64 << bits) - 1;
        for _ in 0..20 {
            let alpha = rng.next_u64() & mask;
            let mut xs: Vec<u64> = (0..50).map(|_| rng.next_u64() & mask).collect();
            xs.extend([
                0,
                mask,
                alpha,
                alpha.wrapping_sub(1) & mask,
                (alpha + 1) & mask,
            ]);
            // Same leaf as alpha, both sides.
            xs.extend([alpha & !127, alpha | 127].map(|x| x & mask));
            check(alpha, Bit(true), bits, &xs, &mut rng);
            let beta = pair(&mut rng);
            check(alpha, beta, bits, &xs, &mut rng);
        }
    }
}

#[test]
fn batch_evaluation_matches_single() {
    let mut rng = Prg::new(5);
    let keys: Vec<DcfKey<Bit>> = (0..40)
        .map(|i| gen_keys(rng.next_u64() >> 33, Bit(true), 31, &mut rng)[i % 2].clone())
        .collect();
    // Random points, and close ones (shared prefixes, duplicates) as thresholds give.
    let points: Vec<Vec<u64>> = (0..40)
        .map(|i| {
            let c = rng.next_u64() >> 33;
            let mut xs: Vec<u64> = (0..i % 4).map(|_| rng.next_u64() >> 33).collect();
            xs.extend((0..i % 7).map(|k| c.wrapping_sub(k * k * 37) & ((1 << 31) - 1)));
            xs.extend(xs.clone().iter().take(2));
            xs
        })
        .collect();
    let batch = DcfKey::eval_batch(&keys, &points, 31);
    for (k, (key, xs)) in keys.iter().zip(&points).enumerate() {
        assert_eq!(batch[k], key.eval_many(xs, 31));
    }
    let pkeys: Vec<DcfKey<Pair>> = (0..40)
        .map(|i| gen_keys(rng.next_u64() >> 33, pair(&mut rng), 31, &mut rng)[i % 2].clone())
        .collect();
    let batch = DcfKey::eval_batch(&pkeys, &points, 31);
    for (k, (key, xs)) in pkeys.iter().zip(&points).enumerate() {
        assert_eq!(batch[k], key.eval_many(xs, 31));
    }
}

#[test]
fn expected_walk_matches_the_average_walk() {
    let mut rng = Prg::new(11);
    let bits = 23;
    let ts: Vec<u64> = (0..56u64).map(|k| k * k * 97 + k * 4096).collect();
    let runs = 400;
    let mean = (0..runs)
        .map(|_| {
            let c = rng.next_u64();
            let pts: Vec<u64> = ts
                .iter()
                .map(|t| c.wrapping_sub(*t) & ((1 << bits) - 1))
                .collect();
            walk_levels::<Pair>(&pts, bits) as f64
        })
        .sum::<f64>()
        / runs as f64;
    let want = expected_walk_levels::<Pair>(&ts, bits);
    assert!(
        (mean - want).abs() < 0.03 * want,
        "mean {mean} expected {want}"
    );
    assert!(
        want < 0.7 * (56 * bits) as f64,
        "shared prefixes save: {want}"
    );
}

#[test]
fn correction_words_round_trip_and_truncation_rejected() {
    let mut rng = Prg::new(3);
    for bits in [31, 63] {
        let cws = gen(12345, Bit(true), bits, [rng.next_u128(), rng.next_u128()]);
        let mut bytes = Vec::new();
        cws.write(&mut bytes);
        assert_eq!(bytes.len(), Cws::<Bit>::bytes(bits));
        let (back, rest) = Cws::<Bit>::read(&bytes, bits).unwrap();
        assert!(rest.is_empty());
        assert_eq!(back, cws);
        assert!(Cws::<Bit>::read(&bytes[..100], bits).is_err());
        let cws = gen(
            12345,
            pair(&mut rng),
            bits,
            [rng.next_u128(), rng.next_u128()],
        );
        let mut bytes = Vec::new();
        cws.write(&mut bytes);
        assert_eq!(bytes.len(), Cws::<Pair>::bytes(bits));
        assert_eq!(Cws::<Pair>::read(&bytes, bits).unwrap().0, cws);
    }
    // 31-bit Bit keys: 24 levels of 16 bytes, 3 bytes of value bits, the leaf.
    assert_eq!(Cws::<Bit>::bytes(31), 24 * 16 + 3 + 16);
}
