//! Pictures of a study: each profile's candidates with the front drawn and labelled,
//! and the hypervolume over evaluations ([`cryptpeft_plot`] draws them).

use std::path::Path;

use cryptpeft_plot::plotters::coord::Shift;
use cryptpeft_plot::plotters::prelude::*;
use cryptpeft_plot::{both, finish, log_frame, s, write_labels, Drawn, PALETTE};

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
    // Latency spans decades (no attention against two blocks of it): a log axis keeps
    // the fast end of the front apart.
    let x_lo = pts.iter().map(ms).fold(f64::INFINITY, f64::min);
    let x_hi = pts.iter().map(ms).chain(budget.map(|b| 1e3 * b));
    let x_hi = x_hi.fold(f64::NEG_INFINITY, f64::max);
    let (x_lo, x_hi) = match x_lo.is_finite() && x_lo > 0.0 {
        true => (x_lo / 1.3, x_hi * 1.3),
        false => (1e-3, 1.0),
    };
    let (y_lo, y_hi) = accuracy_axis(pts, front, floor);
    let mut chart = log_frame(
        &root,
        title,
        (x_lo..x_hi, y_lo..y_hi),
        (
            "predicted online latency per inference (ms, log scale)",
            "validation accuracy (%)",
        ),
        WHITE,
    )?;
    let grey = RGBColor(140, 140, 140);
    let (shown, below): (Vec<&Point>, Vec<&Point>) = pts.iter().partition(|p| pct(p) >= y_lo);
    let (ok, bad): (Vec<&Point>, Vec<&Point>) = shown.iter().partition(|p| p.violation == 0.0);
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
    if !below.is_empty() {
        // Far below the front (a collapsed training): on the bottom edge, pointing down,
        // so that one outlier does not flatten the picture.
        let down = move |(x, y): (i32, i32)| {
            Polygon::new(
                vec![(x - 5, y - 9), (x + 5, y - 9), (x, y - 1)],
                grey.filled(),
            )
        };
        chart
            .draw_series(
                below
                    .iter()
                    .map(|p| EmptyElement::at((ms(p), y_lo)) + down((0, 0))),
            )
            .map_err(s)?
            .label(format!("below {y_lo:.0}% ({})", below.len()))
            .legend(move |(x, y)| down((x, y + 5)));
    }
    let red = PALETTE[0];
    let mut stair = Vec::new();
    for (k, &i) in front.iter().enumerate() {
        stair.push((ms(&pts[i]), pct(&pts[i])));
        if let Some(&j) = front.get(k + 1) {
            stair.push((ms(&pts[j]), pct(&pts[i])));
        }
    }
    let path: Vec<(i32, i32)> = stair.iter().map(|p| chart.backend_coord(p)).collect();
    chart
        .draw_series(LineSeries::new(stair, red.stroke_width(2)))
        .map_err(s)?
        .label(format!("Pareto front ({})", front.len()))
        .legend(move |(x, y)| {
            PathElement::new(vec![(x - 10, y), (x + 10, y)], red.stroke_width(2))
        });
    chart
        .draw_series(
            front
                .iter()
                .map(|&i| Circle::new((ms(&pts[i]), pct(&pts[i])), 6, red.filled())),
        )
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
                vec![(x_lo, 100.0 * f), (x_hi, 100.0 * f)],
                blue.stroke_width(1),
            ))
            .map_err(s)?
            .label(format!("accuracy floor {:.1}%", 100.0 * f))
            .legend(move |(x, y)| PathElement::new(vec![(x - 10, y), (x + 10, y)], blue));
    }
    let pixels: Vec<(i32, i32)> = front
        .iter()
        .map(|&i| chart.backend_coord(&(ms(&pts[i]), pct(&pts[i]))))
        .collect();
    let names: Vec<String> = front.iter().map(|&i| trials[i].config.clone()).collect();
    write_labels(
        &root,
        chart.plotting_area().get_pixel_range(),
        &pixels,
        &names,
        6,
        &path,
    )?;
    finish(chart, &root)
}

/// The accuracy axis (%): the front and what lies within its own span below it, and
/// the floor; what lies further down is drawn on the bottom edge instead.
fn accuracy_axis(pts: &[Point], front: &[usize], floor: Option<f64>) -> (f64, f64) {
    let pct = |p: &Point| 100.0 * p.accuracy;
    let lowest = pts.iter().map(pct).fold(f64::INFINITY, f64::min);
    let highest = pts.iter().map(pct).fold(f64::NEG_INFINITY, f64::max);
    if !lowest.is_finite() {
        return (0.0, 100.0);
    }
    let front_lo = front.iter().map(|&i| pct(&pts[i])).fold(highest, f64::min);
    let reach = front_lo - (highest - front_lo).max(5.0);
    let lo = lowest
        .max(reach)
        .min(floor.map_or(f64::INFINITY, |f| 100.0 * f));
    let lo = (lo - 2.0).max(0.0).floor();
    let hi = (highest + 3.0).min(100.0).ceil();
    (lo, hi.max(lo + 1.0))
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
