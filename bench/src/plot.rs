//! The plots, as SVG drawn with plotters: latency by percentile ([`write`]), whose axis
//! counts nines (p0, p90, p99, p99.9 equally spaced) so that the tail is as wide as the
//! body; and counts over time ([`timeline`]) with events marked.

use crate::load::Lat;
use jeton_testkit::BoxError;
use plotters::prelude::*;
use std::path::Path;

/// Nines shown: up to p99.9.
const NINES: f64 = 3.0;

/// One line of the plot.
pub struct Series<'a> {
    pub name: &'a str,
    pub lat: &'a Lat,
    pub color: RGBColor,
}

pub fn write(path: &Path, title: &str, series: &[Series<'_>]) -> Result<(), BoxError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let ymax = series
        .iter()
        .map(|s| s.lat.q_ms(percentile(NINES)))
        .fold(0.0_f64, f64::max)
        .max(0.01)
        * 1.1;
    let root = SVGBackend::new(path, (800, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..NINES, 0.0..ymax)?;
    chart
        .configure_mesh()
        .x_labels(NINES as usize + 1)
        .x_label_formatter(&|x| label(*x))
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .draw()?;
    for s in series {
        let style = s.color.stroke_width(2);
        let points = (0..=300).map(|i| {
            let x = NINES * f64::from(i) / 300.0;
            (x, s.lat.q_ms(percentile(x)))
        });
        chart
            .draw_series(LineSeries::new(points, style))?
            .label(s.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// One line of a [`timeline`]: (seconds, count) points.
pub struct Line<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
}

/// A moment of a [`timeline`], drawn as a dashed vertical line.
pub struct Mark<'a> {
    pub name: &'a str,
    pub x: f64,
    pub color: RGBColor,
}

/// Counts over time (x in seconds, described by `x_desc`): `left` lines against the left
/// axis, `right` lines (small counts, such as errors) against the right one, `marks` as
/// vertical lines.
pub fn timeline(
    path: &Path,
    title: &str,
    x_desc: &str,
    (left_desc, left): (&str, &[Line<'_>]),
    (right_desc, right): (&str, &[Line<'_>]),
    marks: &[Mark<'_>],
) -> Result<(), BoxError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let all = || left.iter().chain(right).flat_map(|l| l.points.iter());
    let x0 = all().map(|p| p.0).fold(f64::INFINITY, f64::min).min(0.0);
    let x1 = all().map(|p| p.0).fold(0.0_f64, f64::max).max(x0 + 1.0);
    // Headroom above the highest point for the legend.
    let top = |lines: &[Line<'_>], at_least: f64| {
        lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .fold(at_least, f64::max)
            * 1.5
    };
    let (ymax, y2max) = (top(left, 1.0), top(right, 10.0));
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .right_y_label_area_size(50)
        .build_cartesian_2d(x0..x1, 0.0..ymax)?
        .set_secondary_coord(x0..x1, 0.0..y2max);
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(left_desc)
        .draw()?;
    chart.configure_secondary_axes().y_desc(right_desc).draw()?;
    for m in marks {
        let style = m.color.stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(
                [(m.x, 0.0), (m.x, ymax)],
                6,
                4,
                style,
            ))?
            .label(m.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    for l in left {
        let style = l.color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(l.points.iter().copied(), style))?
            .label(l.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    for l in right {
        let style = l.color.stroke_width(1);
        chart
            .draw_secondary_series(LineSeries::new(l.points.iter().copied(), style))?
            .label(format!("{} (right axis)", l.name))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The quantile `x` nines up: 0 → 0, 1 → 0.9, 2 → 0.99, 3 → 0.999.
fn percentile(x: f64) -> f64 {
    1.0 - 10f64.powf(-x)
}

fn label(x: f64) -> String {
    let p = format!("{:.1}", percentile(x) * 100.0);
    format!("p{}", p.trim_end_matches('0').trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_count_nines() {
        let labels: Vec<String> = (0..4).map(|x| super::label(f64::from(x))).collect();
        assert_eq!(labels, ["p0", "p90", "p99", "p99.9"]);
    }
}
