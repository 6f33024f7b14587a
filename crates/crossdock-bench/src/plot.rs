//! PNG plots of a run (plotters' bitmap backend; text drawn with a TrueType font from Debian's
//! `fonts-dejavu-core`, registered once, so no system font library is needed).

use crate::report::num;
use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// Fonts tried in turn (Debian's fonts-dejavu-core, then others often present).
pub const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

static FONT: OnceLock<Result<(), String>> = OnceLock::new();

/// Registers the font as `sans-serif` (once); an error names the package to install.
pub fn init_font() -> Result<()> {
    FONT.get_or_init(|| {
        for path in FONT_CANDIDATES {
            if let Ok(bytes) = std::fs::read(path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(format!(
            "no TrueType font for the plots (looked for {}): apt-get install fonts-dejavu-core",
            FONT_CANDIDATES.join(", ")
        ))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// One bar: median with a min–max whisker (whisker omitted when min == max == median).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    pub value: f64,
    pub min: f64,
    pub max: f64,
}

impl Bar {
    pub fn single(v: f64) -> Bar {
        Bar {
            value: v,
            min: v,
            max: v,
        }
    }
}

const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(214, 39, 40),
];

/// Every chart here: f64 by f64 on a bitmap.
type Chart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// The frame every chart here starts from: a title, margins, label areas, both axes from 0.
fn titled_chart<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>,
    title: &str,
    xmax: f64,
    ymax: f64,
) -> Result<Chart<'a, 'b>> {
    ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)
        .map_err(err)
}

/// Draws the legend box at `position` and writes the PNG: the common end of every chart.
fn legend_and_write<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    root: &DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>,
    path: &Path,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("{e}")
}

/// A grouped bar chart: one group per category, one bar per series, optional horizontal lines
/// (targets) with labels.
pub fn bar_chart(
    path: &Path,
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[(String, Vec<Option<Bar>>)],
    hlines: &[(f64, String)],
) -> Result<()> {
    init_font()?;
    let root = BitMapBackend::new(path, (1300, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let n = categories.len().max(1) as f64;
    let top = series
        .iter()
        .flat_map(|(_, bars)| bars.iter().flatten().map(|b| b.max.max(b.value)))
        .chain(hlines.iter().map(|h| h.0))
        .fold(0.0f64, f64::max);
    let ymax = if top > 0.0 { top * 1.18 } else { 1.0 };
    let mut chart = titled_chart(&root, title, n, ymax)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    let m = series.len().max(1) as f64;
    let w = 0.8 / m;
    for (k, (name, bars)) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let rects: Vec<_> = bars
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                b.map(|b| {
                    let x0 = i as f64 + 0.1 + k as f64 * w;
                    Rectangle::new([(x0, 0.0), (x0 + w * 0.95, b.value)], color.filled())
                })
            })
            .collect();
        chart
            .draw_series(rects)
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
        for (i, b) in bars.iter().enumerate() {
            let Some(b) = b else { continue };
            let xc = i as f64 + 0.1 + k as f64 * w + w * 0.475;
            if b.max > b.min {
                let cap = w * 0.2;
                chart
                    .draw_series([
                        PathElement::new(vec![(xc, b.min), (xc, b.max)], BLACK.stroke_width(1)),
                        PathElement::new(
                            vec![(xc - cap, b.min), (xc + cap, b.min)],
                            BLACK.stroke_width(1),
                        ),
                        PathElement::new(
                            vec![(xc - cap, b.max), (xc + cap, b.max)],
                            BLACK.stroke_width(1),
                        ),
                    ])
                    .map_err(err)?;
            }
            let (px, py) = chart.backend_coord(&(xc, b.max.max(b.value)));
            root.draw(&Text::new(
                num(b.value),
                (px - 14, py - 18),
                ("sans-serif", 13).into_font().color(&BLACK),
            ))
            .map_err(err)?;
        }
    }
    for (j, (y, label)) in hlines.iter().enumerate() {
        let color = [RED, RGBColor(200, 0, 200), RGBColor(0, 150, 150)][j % 3];
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, *y), (n, *y)],
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2))
            });
    }
    for (i, c) in categories.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        let approx = (c.chars().count() as i32) * 7 / 2;
        root.draw(&Text::new(
            c.clone(),
            (px - approx, py + 10),
            ("sans-serif", 14).into_font().color(&BLACK),
        ))
        .map_err(err)?;
    }
    legend_and_write(&mut chart, &root, path, SeriesLabelPosition::UpperRight)
}

/// Lines over time: one per series of (x, y) points.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    hlines: &[(f64, String)],
) -> Result<()> {
    init_font()?;
    let root = BitMapBackend::new(path, (1300, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let xmax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.0))
        .fold(0.0f64, f64::max)
        .max(1.0);
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .chain(hlines.iter().map(|h| h.0))
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.15;
    let mut chart = titled_chart(&root, title, xmax, ymax)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for (k, (name, points)) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2))
            });
    }
    for (j, (y, label)) in hlines.iter().enumerate() {
        let color = [RED, RGBColor(200, 0, 200), RGBColor(0, 150, 150)][j % 3];
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, *y), (xmax, *y)],
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2))
            });
    }
    legend_and_write(&mut chart, &root, path, SeriesLabelPosition::UpperLeft)
}

/// One labelled point of a trade-off chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub label: String,
    pub x: f64,
    pub y: f64,
    /// Only a lower bound is known (the measurement stopped at a deadline): drawn as a triangle
    /// pointing up, its label saying so.
    pub lower_bound: bool,
    /// Drawn larger and in red (the defaults).
    pub highlight: bool,
}

/// The axis ranges of a trade-off chart: every point and the target region inside, with room above and
/// to the right for the labels.
pub fn scatter_extent(points: &[Point], region: (f64, f64)) -> (f64, f64) {
    let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
    let x = points.iter().map(|p| finite(p.x)).fold(region.0, f64::max);
    let y = points.iter().map(|p| finite(p.y)).fold(region.1, f64::max);
    (x.max(1e-9) * 1.3, y.max(1e-9) * 1.2)
}

/// A trade-off chart: labelled points joined in the given order, and the region where both targets
/// hold (`x <= region.0`, `y <= region.1`) shaded and outlined.
pub fn tradeoff_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[Point],
    region: (f64, f64),
    region_label: &str,
) -> Result<()> {
    init_font()?;
    let (width, height) = (1300u32, 720u32);
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (xmax, ymax) = scatter_extent(points, region);
    let mut chart = titled_chart(&root, title, xmax, ymax)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    let green = RGBColor(44, 160, 44);
    chart
        .draw_series([Rectangle::new(
            [(0.0, 0.0), region],
            green.mix(0.18).filled(),
        )])
        .map_err(err)?
        .label(region_label.to_string())
        .legend(move |(x, y)| {
            Rectangle::new([(x, y - 6), (x + 14, y + 6)], green.mix(0.4).filled())
        });
    chart
        .draw_series([Rectangle::new([(0.0, 0.0), region], green.stroke_width(2))])
        .map_err(err)?;
    let drawn: Vec<&Point> = points
        .iter()
        .filter(|p| p.x.is_finite() && p.y.is_finite())
        .collect();
    let grey = RGBColor(150, 150, 150);
    chart
        .draw_series(LineSeries::new(
            drawn.iter().map(|p| (p.x, p.y)),
            grey.stroke_width(1),
        ))
        .map_err(err)?;
    let blue = COLORS[0];
    let orange = COLORS[1];
    let kinds: [(&str, bool, bool); 4] = [
        ("converged", false, false),
        ("not converged: lower bound (both values)", true, false),
        ("agent default", false, true),
        ("agent default, not converged: lower bound", true, true),
    ];
    for (name, lower, high) in kinds {
        let these: Vec<(f64, f64)> = drawn
            .iter()
            .filter(|p| p.lower_bound == lower && p.highlight == high)
            .map(|p| (p.x, p.y))
            .collect();
        if these.is_empty() {
            continue;
        }
        let color = if high {
            RED
        } else if lower {
            orange
        } else {
            blue
        };
        let size = if high { 10 } else { 7 };
        if lower {
            chart
                .draw_series(
                    these
                        .iter()
                        .map(|&c| TriangleMarker::new(c, size + 2, color.filled())),
                )
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| TriangleMarker::new((x + 7, y), 7, color.filled()));
        } else {
            chart
                .draw_series(these.iter().map(|&c| Circle::new(c, size, color.filled())))
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 7, y), 6, color.filled()));
        }
        if high {
            chart
                .draw_series(
                    these
                        .iter()
                        .map(|&c| Circle::new(c, size + 5, BLACK.stroke_width(2))),
                )
                .map_err(err)?;
        }
    }
    for p in &drawn {
        let (px, py) = chart.backend_coord(&(p.x, p.y));
        let approx = (p.label.chars().count() as i32) * 7;
        let x = if px + 14 + approx > width as i32 - 20 {
            px - 14 - approx
        } else {
            px + 14
        };
        root.draw(&Text::new(
            p.label.clone(),
            (x, py - 22),
            ("sans-serif", 14).into_font().color(&BLACK),
        ))
        .map_err(err)?;
    }
    legend_and_write(&mut chart, &root, path, SeriesLabelPosition::UpperRight)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_png(path: &Path) -> bool {
        std::fs::read(path)
            .map(|b| b.starts_with(b"\x89PNG\r\n\x1a\n") && b.len() > 2000)
            .unwrap_or(false)
    }

    #[test]
    fn charts_are_written_as_png() {
        if init_font().is_err() {
            crossdock_lab::testing::skip("no TrueType font (apt-get install fonts-dejavu-core)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bars.png");
        bar_chart(
            &p,
            "throughput",
            "Gbit/s",
            &["(a) host".into(), "(b) crossdock".into()],
            &[
                (
                    "1 stream".into(),
                    vec![
                        Some(Bar {
                            value: 10.0,
                            min: 9.0,
                            max: 11.0,
                        }),
                        None,
                    ],
                ),
                (
                    "4 streams".into(),
                    vec![Some(Bar::single(12.0)), Some(Bar::single(8.0))],
                ),
            ],
            &[(9.5, "target".into())],
        )
        .unwrap();
        assert!(is_png(&p));
        let p = dir.path().join("lines.png");
        line_chart(
            &p,
            "rss",
            "s",
            "MiB",
            &[("h1".into(), vec![(0.0, 7.0), (10.0, 7.5)])],
            &[(20.0, "limit".into())],
        )
        .unwrap();
        assert!(is_png(&p));
        let p = dir.path().join("tradeoff.png");
        let point = |label: &str, x, y, lower_bound, highlight| Point {
            label: label.into(),
            x,
            y,
            lower_bound,
            highlight,
        };
        tradeoff_chart(
            &p,
            "trade-off",
            "calls per host",
            "time / serial limit",
            &[
                point("fast", 30.0, 1.1, false, false),
                point("default", 12.0, 1.4, false, true),
                point("slow", 5.0, 1.7, true, false),
            ],
            (4.0, 1.3),
            "both targets met",
        )
        .unwrap();
        assert!(is_png(&p));
    }

    #[test]
    fn the_tradeoff_axes_hold_every_point_and_the_target_region() {
        let p = |x, y| Point {
            label: String::new(),
            x,
            y,
            lower_bound: false,
            highlight: false,
        };
        // Points far outside the region: the axes reach past them, with room for the labels.
        let (x, y) = scatter_extent(&[p(30.0, 1.1), p(12.0, 1.7)], (4.0, 1.3));
        assert!(x > 30.0 && y > 1.7, "{x} {y}");
        // Points inside the region: the region still shows whole.
        let (x, y) = scatter_extent(&[p(2.0, 1.0)], (4.0, 1.3));
        assert!(x > 4.0 && y > 1.3, "{x} {y}");
        // No point (every storm failed): the region alone; a non-finite value is ignored.
        let (x, y) = scatter_extent(&[p(f64::NAN, 1.0)], (4.0, 1.3));
        assert!(x.is_finite() && x > 4.0 && y > 1.3, "{x} {y}");
    }
}
