//! Pictures of a study: each profile's candidates with the front drawn and labelled,
//! and the hypervolume over evaluations ([`cryptpeft_plot`] draws them).

use std::path::Path;

use cryptpeft_plot::plotters::coord::Shift;
use cryptpeft_plot::plotters::prelude::*;
use cryptpeft_plot::{both, finish, frame, s, Drawn, PALETTE};

use crate::error::{Error, Result};
use crate::pareto::Point;
use crate::study::Study;
use crate::study::Trial;

pub use cryptpeft_plot::lines;

/// The front plot of profile `p`: every candidate (grey; crosses break a constraint),
/// the front as a staircase with its members labelled by spec.
pub fn pareto(
    stem: &Path,
    title: &str,
    pts: &[Point],
    trials: &[Trial],
    front: &[usize],
    study: &Study,
    p: usize,
) -> Result<()> {
    let name = &study.view.space.networks[p];
    let budget = study.view.space.constraints.latency_s.get(name).copied();
    let floor = study.view.space.constraints.min_accuracy;
    both(
        stem,
        |a| draw_pareto(a, title, pts, trials, front, budget, floor),
        |a| draw_pareto(a, title, pts, trials, front, budget, floor),
    )
    .map_err(Error::Other)
}

fn draw_pareto<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    pts: &[Point],
    trials: &[Trial],
    front: &[usize],
    budget: Option<f64>,
    floor: Option<f64>,
) -> Drawn {
    let ms = |p: &Point| 1e3 * p.seconds;
    let pct = |p: &Point| 100.0 * p.accuracy;
    let x_max = pts.iter().map(ms).fold(1e-6, f64::max) * 1.2;
    let y_lo = pts.iter().map(pct).fold(100.0, f64::min);
    let y_lo = (y_lo - 3.0).max(0.0).floor();
    let y_hi = (pts.iter().map(pct).fold(0.0, f64::max) + 3.0)
        .min(100.0)
        .ceil();
    let mut chart = frame(
        &root,
        title,
        (0.0..x_max, y_lo..y_hi.max(y_lo + 1.0)),
        (
            "predicted online latency per inference (ms)",
            "validation accuracy (%)",
        ),
        WHITE,
    )?;
    let grey = RGBColor(140, 140, 140);
    let (ok, bad): (Vec<&Point>, Vec<&Point>) = pts.iter().partition(|p| p.violation == 0.0);
    chart
        .draw_series(
            ok.iter()
                .map(|p| Circle::new((ms(p), pct(p)), 4, grey.mix(0.7).filled())),
        )
        .map_err(s)?
        .label(format!("candidates ({})", pts.len()))
        .legend(move |(x, y)| Circle::new((x, y), 4, grey.filled()));
    if !bad.is_empty() {
        chart
            .draw_series(
                bad.iter()
                    .map(|p| Cross::new((ms(p), pct(p)), 4, grey.stroke_width(1))),
            )
            .map_err(s)?
            .label(format!("break a constraint ({})", bad.len()))
            .legend(move |(x, y)| Cross::new((x, y), 4, grey));
    }
    let red = PALETTE[0];
    let mut stair = Vec::new();
    for (k, &i) in front.iter().enumerate() {
        stair.push((ms(&pts[i]), pct(&pts[i])));
        if let Some(&j) = front.get(k + 1) {
            stair.push((ms(&pts[j]), pct(&pts[i])));
        }
    }
    chart
        .draw_series(LineSeries::new(stair, red.stroke_width(2)))
        .map_err(s)?
        .label(format!("Pareto front ({})", front.len()))
        .legend(move |(x, y)| {
            PathElement::new(vec![(x - 10, y), (x + 10, y)], red.stroke_width(2))
        });
    chart
        .draw_series(front.iter().enumerate().map(|(k, &i)| {
            // Neighbours on the staircase alternate above and below their point.
            let dy = if k % 2 == 0 { 6 } else { -20 };
            EmptyElement::at((ms(&pts[i]), pct(&pts[i])))
                + Circle::new((0, 0), 6, red.filled())
                + Text::new(trials[i].config.clone(), (8, dy), ("sans-serif", 14))
        }))
        .map_err(s)?;
    let blue = PALETTE[1];
    if let Some(b) = budget {
        chart
            .draw_series(LineSeries::new(
                vec![(1e3 * b, y_lo), (1e3 * b, y_hi)],
                blue.stroke_width(1),
            ))
            .map_err(s)?
            .label(format!("latency budget {:.1} ms", 1e3 * b))
            .legend(move |(x, y)| PathElement::new(vec![(x - 10, y), (x + 10, y)], blue));
    }
    if let Some(f) = floor {
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, 100.0 * f), (x_max, 100.0 * f)],
                blue.stroke_width(1),
            ))
            .map_err(s)?
            .label(format!("accuracy floor {:.1}%", 100.0 * f))
            .legend(move |(x, y)| PathElement::new(vec![(x - 10, y), (x + 10, y)], blue));
    }
    finish(chart, &root)
}

/// Hypervolume (fraction of the normalised objective square) after each evaluation.
pub fn hypervolume(
    stem: &Path,
    name: &str,
    curves: &[Vec<f64>],
    profiles: &[String],
) -> Result<()> {
    let title = format!("{name}: hypervolume of the evaluated candidates");
    let xy: Vec<Vec<(f64, f64)>> = curves
        .iter()
        .map(|c| {
            c.iter()
                .enumerate()
                .map(|(i, v)| ((i + 1) as f64, *v))
                .collect()
        })
        .collect();
    cryptpeft_plot::lines(
        stem,
        &title,
        "evaluations",
        "hypervolume (accuracy x normalised latency)",
        &xy,
        profiles,
    )
    .map_err(Error::Other)
}
