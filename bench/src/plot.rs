//! Latency by percentile as an SVG, drawn with plotters. The percentile axis counts nines
//! (p0, p90, p99, p99.9 equally spaced), so the tail is as wide as the body.

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
