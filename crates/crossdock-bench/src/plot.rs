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
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..n, 0f64..ymax)
        .map_err(err)?;
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
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
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
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)
        .map_err(err)?;
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
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
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
            eprintln!("skipped: no TrueType font (apt-get install fonts-dejavu-core)");
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
    }
}
