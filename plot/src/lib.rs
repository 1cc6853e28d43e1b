//! Pictures for people: lines, measured against predicted, labelled points, one
//! quantity against another, and the
//! frame, palette and font every plot of the project shares (the search's fronts use
//! them too). PNG and SVG, each written whole, with a font shipped in the crate so they
//! render the same on any machine.

use std::path::Path;
use std::sync::Once;

use plotters::coord::combinators::{BindKeyPoints, LogCoord, WithKeyPoints};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

pub use plotters;

pub mod labels;

/// DejaVu Sans (Bitstream Vera license; see `assets/README.md`).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const SIZE: (u32, u32) = (1100, 700);
/// The colors of the series, in order.
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
];

fn font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// What a drawing gives back: nothing, or its error as text.
pub type Drawn = std::result::Result<(), String>;

/// A drawing error as text.
pub fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Draws into `<stem>.png` and `<stem>.svg`, each written atomically.
pub fn both(
    stem: &Path,
    png: impl Fn(DrawingArea<BitMapBackend, Shift>) -> Drawn,
    svg: impl Fn(DrawingArea<SVGBackend, Shift>) -> Drawn,
) -> Result<(), String> {
    font();
    for ext in ["png", "svg"] {
        // Per process, like `write_atomic`; the backend reads the format off the extension.
        let tmp = stem.with_extension(format!("{}.tmp.{ext}", std::process::id()));
        let fin = stem.with_extension(ext);
        let drawn = match ext {
            "png" => png(BitMapBackend::new(&tmp, SIZE).into_drawing_area()),
            _ => svg(SVGBackend::new(&tmp, SIZE).into_drawing_area()),
        };
        drawn.map_err(|e| format!("{}: {e}", fin.display()))?;
        std::fs::rename(&tmp, &fin).map_err(|e| format!("{}: {e}", fin.display()))?;
    }
    Ok(())
}

/// A chart on `f64` axes.
pub type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A white canvas with title, axes and their descriptions.
pub fn frame<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    (x, y): (std::ops::Range<f64>, std::ops::Range<f64>),
    desc: (&str, &str),
    light: RGBColor,
) -> std::result::Result<Chart<'a, DB>, String> {
    dress(root, title, (x.into(), y), desc, light, &trim)
}

/// A chart whose x axis is logarithmic.
pub type LogChart<'a, DB> =
    ChartContext<'a, DB, Cartesian2d<WithKeyPoints<LogCoord<f64>>, RangedCoordf64>>;

/// [`frame`] with a logarithmic x axis (ticks by [`log_tick`]): for quantities such as
/// latency that span decades, whose small values would crowd a linear axis.
pub fn log_frame<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    (x, y): (std::ops::Range<f64>, std::ops::Range<f64>),
    desc: (&str, &str),
    light_color: RGBColor,
) -> std::result::Result<LogChart<'a, DB>, String> {
    let within = |m: f64| (-12..=12).map(move |e| m * 10f64.powi(e));
    let ticks = |ms: &[f64]| -> Vec<f64> {
        let mut v: Vec<f64> = ms
            .iter()
            .flat_map(|&m| within(m))
            .filter(|v| x.contains(v))
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let bold = ticks(&[1.0, 2.0, 5.0]);
    let light = ticks(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    let x = x
        .clone()
        .log_scale()
        .with_key_points(bold)
        .with_light_points(light);
    dress(root, title, (x, y), desc, light_color, &log_tick)
}

/// The canvas, caption, axes and mesh every chart shares, the x axis `x` with tick
/// labels by `tick`.
fn dress<'a, DB: DrawingBackend, X>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    (x, y): (X, std::ops::Range<f64>),
    (x_desc, y_desc): (&str, &str),
    light: RGBColor,
    tick: &dyn Fn(f64) -> String,
) -> std::result::Result<ChartContext<'a, DB, Cartesian2d<X, RangedCoordf64>>, String>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    root.fill(&WHITE).map_err(s)?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)
        .map_err(s)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| trim(*v))
        .light_line_style(light)
        .draw()
        .map_err(s)?;
    Ok(chart)
}

/// Writes `texts[k]` next to the marker (radius `r`) at pixel `points[k]` of `root`,
/// placed by [`labels::place`] inside the plotting `area` (pixel ranges) and off the
/// polyline `path` (pixels; a front's staircase), with a thin leader line where a
/// label had to move away from its point.
pub fn write_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    area: (std::ops::Range<i32>, std::ops::Range<i32>),
    points: &[(i32, i32)],
    texts: &[String],
    r: i32,
    path: &[(i32, i32)],
) -> Drawn {
    let style = ("sans-serif", 14).into_text_style(root);
    let sizes = texts
        .iter()
        .map(|t| {
            let (w, h) = root.estimate_text_size(t, &style).map_err(s)?;
            Ok((w as i32, h as i32))
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    let bounds = (
        area.0.start,
        area.1.start,
        area.0.end - area.0.start,
        area.1.end - area.1.start,
    );
    // Each segment as its bounding box, a pixel either side.
    let segments: Vec<labels::Box2> = path
        .windows(2)
        .map(|w| {
            let (x0, y0) = (w[0].0.min(w[1].0), w[0].1.min(w[1].1));
            let (x1, y1) = (w[0].0.max(w[1].0), w[0].1.max(w[1].1));
            (x0 - 1, y0 - 1, x1 - x0 + 2, y1 - y0 + 2)
        })
        .collect();
    let boxes = labels::place(points, &sizes, r, bounds, &segments);
    let grey = RGBColor(120, 120, 120);
    for ((&p, b), t) in points.iter().zip(&boxes).zip(texts) {
        if let Some(end) = labels::leader(p, *b) {
            root.draw(&PathElement::new(vec![p, end], grey))
                .map_err(s)?;
        }
        root.draw(&Text::new(t.clone(), (b.0, b.1), style.clone()))
            .map_err(s)?;
    }
    Ok(())
}

/// A log axis' tick label: only at 1, 2 and 5 times a power of ten (the others stay
/// unlabelled, so labels do not run into each other near a decade).
pub fn log_tick(v: f64) -> String {
    let mantissa = v / 10f64.powf(v.log10().floor());
    match [1.0, 2.0, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-6) {
        true => trim(v),
        false => String::new(),
    }
}

/// A tick label without trailing zeros (`10`, `0.95`).
pub fn trim(v: f64) -> String {
    let t = format!("{v:.3}");
    t.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The legend, then the file.
pub fn finish<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: ChartContext<'a, DB, CT>,
    root: &'a DrawingArea<DB, Shift>,
) -> Drawn {
    finish_at(chart, root, SeriesLabelPosition::LowerRight)
}

/// The legend at `position`, then the file.
pub fn finish_at<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    mut chart: ChartContext<'a, DB, CT>,
    root: &'a DrawingArea<DB, Shift>,
    position: SeriesLabelPosition,
) -> Drawn {
    chart
        .configure_series_labels()
        .position(position)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(s)?;
    root.present().map_err(s)
}

/// One line per name through `curves[k]`'s `(x, y)` points.
pub fn lines(
    stem: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    curves: &[Vec<(f64, f64)>],
    names: &[String],
) -> Result<(), String> {
    both(
        stem,
        |a| draw_curves(a, title, x_desc, y_desc, curves, names),
        |a| draw_curves(a, title, x_desc, y_desc, curves, names),
    )
}

fn draw_curves<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    curves: &[Vec<(f64, f64)>],
    names: &[String],
) -> Drawn {
    let all = || curves.iter().flatten();
    let x_lo = all().map(|p| p.0).fold(f64::INFINITY, f64::min).min(1.0);
    let x_hi = all().map(|p| p.0).fold(x_lo + 1.0, f64::max);
    // The y axis spans the data (with a margin), so close curves stay apart.
    let y_min = all().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y_max = all().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    // No points (every candidate pruned): an empty chart over 0..1, not an infinite range.
    let (y_min, y_max) = match y_min.is_finite() {
        true => (y_min, y_max),
        false => (0.0, 1.0),
    };
    let pad = ((y_max - y_min) * 0.1).max(0.01);
    let (y_lo, y_hi) = ((y_min - pad).max(0.0), y_max + pad);
    let mut chart = frame(
        &root,
        title,
        (x_lo..x_hi, y_lo..y_hi),
        (x_desc, y_desc),
        RGBColor(235, 235, 235),
    )?;
    for (k, (c, label)) in curves.iter().zip(names).enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(c.iter().copied(), color.stroke_width(2)))
            .map_err(s)?
            .label(label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x - 10, y), (x + 10, y)], color.stroke_width(2))
            });
    }
    finish_at(chart, &root, clear_corner(curves))
}

/// The legend where the curves are not: above them as they fall, beside as they rise.
fn clear_corner(curves: &[Vec<(f64, f64)>]) -> SeriesLabelPosition {
    let first: f64 = curves.iter().filter_map(|c| c.first()).map(|p| p.1).sum();
    let last: f64 = curves.iter().filter_map(|c| c.last()).map(|p| p.1).sum();
    match last < first {
        true => SeriesLabelPosition::UpperRight,
        false => SeriesLabelPosition::UpperLeft,
    }
}

/// One color per name: `measured[k]` as points joined by a line, `model[k]` as a thin
/// line of the same color (an experiment beside the cost model's curve).
pub fn measured_vs_model(
    stem: &Path,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    measured: &[Vec<(f64, f64)>],
    model: &[Vec<(f64, f64)>],
    names: &[String],
) -> Result<(), String> {
    let desc = (x_desc, y_desc);
    both(
        stem,
        |a| draw_measured(a, title, desc, measured, model, names),
        |a| draw_measured(a, title, desc, measured, model, names),
    )
}

fn draw_measured<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    desc: (&str, &str),
    measured: &[Vec<(f64, f64)>],
    model: &[Vec<(f64, f64)>],
    names: &[String],
) -> Drawn {
    let all = || measured.iter().chain(model).flatten();
    let x_lo = all().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x_hi = all().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let y_hi = all().map(|p| p.1).fold(0.0, f64::max) * 1.1;
    let (x_lo, x_hi) = match x_lo < x_hi {
        true => (x_lo, x_hi),
        false => (0.0, 1.0),
    };
    let mut chart = frame(
        &root,
        title,
        (x_lo..x_hi, 0.0..y_hi.max(1e-6)),
        desc,
        RGBColor(235, 235, 235),
    )?;
    for (k, name) in names.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let pts = measured[k].clone();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(s)?
            .label(format!("{name} measured"))
            .legend(move |(x, y)| Circle::new((x, y), 4, color.filled()));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(s)?;
        chart
            .draw_series(LineSeries::new(model[k].iter().copied(), color.mix(0.6)))
            .map_err(s)?
            .label(format!("{name} cost model"))
            .legend(move |(x, y)| PathElement::new(vec![(x - 10, y), (x + 10, y)], color));
    }
    finish_at(chart, &root, clear_corner(measured))
}

/// A named group of labelled points `(x, y, label)`.
pub type Group = (String, Vec<(f64, f64, String)>);

/// Labelled points in colored groups (e.g. CryptPEFT's adapters and the baselines), the
/// x axis logarithmic.
pub fn labelled_points(
    stem: &Path,
    title: &str,
    desc: (&str, &str),
    groups: &[Group],
) -> Result<(), String> {
    both(
        stem,
        |a| draw_labelled(a, title, desc, groups),
        |a| draw_labelled(a, title, desc, groups),
    )
}

fn draw_labelled<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    desc: (&str, &str),
    groups: &[Group],
) -> Drawn {
    let all = || groups.iter().flat_map(|g| g.1.iter());
    let x_lo = all().map(|p| p.0).fold(f64::INFINITY, f64::min).max(1e-9);
    let x_hi = all().map(|p| p.0).fold(x_lo * 2.0, f64::max);
    let y_lo = all().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y_hi = all().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let (y_lo, y_hi) = match y_lo <= y_hi {
        true => ((y_lo - 3.0).floor(), (y_hi + 2.0).ceil()),
        false => (0.0, 1.0),
    };
    let mut chart = log_frame(
        &root,
        title,
        (x_lo / 1.5..x_hi * 3.0, y_lo..y_hi),
        desc,
        RGBColor(235, 235, 235),
    )?;
    for (k, (name, pts)) in groups.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        chart
            .draw_series(
                pts.iter()
                    .map(|(x, y, _)| Circle::new((*x, *y), 5, color.filled())),
            )
            .map_err(s)?
            .label(name.clone())
            .legend(move |(x, y)| Circle::new((x, y), 5, color.filled()));
    }
    let pixels: Vec<(i32, i32)> = all().map(|p| chart.backend_coord(&(p.0, p.1))).collect();
    let texts: Vec<String> = all().map(|p| p.2.clone()).collect();
    write_labels(
        &root,
        chart.plotting_area().get_pixel_range(),
        &pixels,
        &texts,
        5,
        &[],
    )?;
    finish_at(chart, &root, SeriesLabelPosition::LowerRight)
}

/// Groups of points `(x, y)` on equal axes with the diagonal `y = x` drawn thin: the same
/// quantity measured twice (a table against its retraining), where distance from the
/// diagonal is the disagreement.
pub fn against(
    stem: &Path,
    title: &str,
    desc: (&str, &str),
    groups: &[(String, Vec<(f64, f64)>)],
) -> Result<(), String> {
    both(
        stem,
        |a| draw_against(a, title, desc, groups),
        |a| draw_against(a, title, desc, groups),
    )
}

fn draw_against<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    desc: (&str, &str),
    groups: &[(String, Vec<(f64, f64)>)],
) -> Drawn {
    let all = || {
        groups
            .iter()
            .flat_map(|g| g.1.iter())
            .flat_map(|p| [p.0, p.1])
    };
    let lo = all().fold(f64::INFINITY, f64::min);
    let hi = all().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = match lo < hi {
        true => (lo - 0.02 * (hi - lo), hi + 0.02 * (hi - lo)),
        false => (0.0, 1.0),
    };
    let mut chart = frame(
        &root,
        title,
        (lo..hi, lo..hi),
        desc,
        RGBColor(235, 235, 235),
    )?;
    chart
        .draw_series(LineSeries::new([(lo, lo), (hi, hi)], BLACK.mix(0.5)))
        .map_err(s)?
        .label("equal")
        .legend(|(x, y)| PathElement::new(vec![(x - 10, y), (x + 10, y)], BLACK.mix(0.5)));
    for (k, (name, pts)) in groups.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        chart
            .draw_series(
                pts.iter()
                    .map(|&p| Circle::new(p, 4, color.mix(0.7).filled())),
            )
            .map_err(s)?
            .label(name.clone())
            .legend(move |(x, y)| Circle::new((x, y), 4, color.filled()));
    }
    // Above the diagonal's far end nothing lies; below it may (a collapsed training).
    finish_at(chart, &root, SeriesLabelPosition::UpperLeft)
}
