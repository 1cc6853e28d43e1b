//! Where labels go: a front's members crowd where latency is low, and labels written at
//! a fixed offset run into each other there. Each label, in the order given, takes the
//! first of a few positions around its point (then further up or down, joined to the
//! point by a leader line) that stays inside the plot and clear of the labels already
//! placed, of every marked point and of the given obstacles (a front's staircase); where
//! none is clear, the one that overlaps least.

/// A pixel box: left, top, width, height.
pub type Box2 = (i32, i32, i32, i32);

/// Gap between a point and its label, in pixels (beyond the marker's radius).
const GAP: i32 = 4;
/// How many label heights a label may move up or down from its point.
const REACH: i32 = 8;

fn overlap(a: Box2, b: Box2) -> i64 {
    let w = (a.0 + a.2).min(b.0 + b.2) - a.0.max(b.0);
    let h = (a.1 + a.3).min(b.1 + b.3) - a.1.max(b.1);
    if w > 0 && h > 0 {
        w as i64 * h as i64
    } else {
        0
    }
}

/// The positions tried for a label of size `(w, h)` at point `(x, y)` whose marker has
/// radius `r`: below-right and above-left first (where a staircase rising to the right
/// leaves room), then the other corners, then beside; then ever further up and down,
/// right then left.
fn positions((x, y): (i32, i32), (w, h): (i32, i32), r: i32) -> Vec<Box2> {
    let (right, left) = (x + r + GAP, x - r - GAP - w);
    // Above or below the marker a label may start at its middle: it hugs its point.
    let (hug_right, hug_left) = (x + GAP, x - GAP - w);
    let (mid, above, below) = (y - h / 2, y - r - h, y + r);
    let mut out = vec![
        (hug_right, below),
        (hug_left, above),
        (hug_right, above),
        (hug_left, below),
        (right, mid),
        (left, mid),
    ];
    for k in 1..=REACH {
        for dy in [-k * (h + 2), k * (h + 2)] {
            out.extend([(right, mid + dy), (left, mid + dy)]);
        }
    }
    out.into_iter().map(|(l, t)| (l, t, w, h)).collect()
}

/// The box of each label `sizes[k]` for the point `points[k]` (markers of radius `r`),
/// all inside `area`, clear of `obstacles` where possible.
pub fn place(
    points: &[(i32, i32)],
    sizes: &[(i32, i32)],
    r: i32,
    area: Box2,
    obstacles: &[Box2],
) -> Vec<Box2> {
    let fixed: Vec<Box2> = points
        .iter()
        .map(|&(x, y)| (x - r, y - r, 2 * r, 2 * r))
        .chain(obstacles.iter().copied())
        .collect();
    let inside = |b: Box2| {
        b.0 >= area.0
            && b.1 >= area.1
            && b.0 + b.2 <= area.0 + area.2
            && b.1 + b.3 <= area.1 + area.3
    };
    let mut placed: Vec<Box2> = Vec::new();
    for (&p, &size) in points.iter().zip(sizes) {
        let all = positions(p, size, r);
        let clash = |b: Box2| -> i64 { placed.iter().chain(&fixed).map(|&o| overlap(b, o)).sum() };
        let inner: Vec<Box2> = all.iter().copied().filter(|&b| inside(b)).collect();
        let pick = inner
            .iter()
            .copied()
            .find(|&b| clash(b) == 0)
            .or_else(|| inner.iter().copied().min_by_key(|&b| clash(b)))
            .unwrap_or(all[0]);
        placed.push(pick);
    }
    placed
}

/// Whether a label at `b` is far enough from its point `(x, y)` to need a leader line,
/// and where the line meets the label (the middle of its near side).
pub fn leader((x, y): (i32, i32), b: Box2) -> Option<(i32, i32)> {
    let (top, bottom) = (b.1, b.1 + b.3);
    if y >= top - b.3 && y <= bottom + b.3 {
        return None;
    }
    let side = if b.0 >= x { b.0 } else { b.0 + b.2 };
    Some((side, b.1 + b.3 / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crowded_labels_do_not_overlap_when_there_is_room() {
        // Ten points a few pixels apart, as a front's fast corner on a linear axis.
        let points: Vec<(i32, i32)> = (0..10).map(|k| (100 + 3 * k, 300 - 4 * k)).collect();
        let sizes = vec![(150, 14); 10];
        let area = (0, 0, 800, 600);
        let boxes = place(&points, &sizes, 6, area, &[]);
        for (i, a) in boxes.iter().enumerate() {
            assert!(a.0 >= 0 && a.1 >= 0 && a.0 + a.2 <= 800 && a.1 + a.3 <= 600);
            for b in &boxes[i + 1..] {
                assert_eq!(overlap(*a, *b), 0, "{a:?} and {b:?}");
            }
            for &(x, y) in &points {
                assert_eq!(
                    overlap(*a, (x - 6, y - 6, 12, 12)),
                    0,
                    "{a:?} over ({x}, {y})"
                );
            }
        }
        // The first label sits beside its point; displaced ones get a leader line.
        assert_eq!(leader(points[0], boxes[0]), None);
        assert!(boxes
            .iter()
            .zip(&points)
            .any(|(b, &p)| leader(p, *b).is_some()));
    }

    #[test]
    fn labels_keep_off_the_obstacles() {
        // A staircase's horizontal run leaving the point to the right, and its riser
        // arriving from below: the label takes neither.
        let run = (100, 299, 300, 3);
        let riser = (99, 300, 3, 200);
        let boxes = place(
            &[(100, 300)],
            &[(150, 14)],
            6,
            (0, 0, 800, 600),
            &[run, riser],
        );
        assert_eq!(overlap(boxes[0], run) + overlap(boxes[0], riser), 0);
    }

    #[test]
    fn a_label_at_the_right_edge_goes_left() {
        let boxes = place(&[(790, 300)], &[(150, 14)], 6, (0, 0, 800, 600), &[]);
        assert!(boxes[0].0 + boxes[0].2 <= 790);
    }
}
