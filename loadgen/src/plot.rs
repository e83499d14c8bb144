//! The latency-against-load plot (PNG), drawn with plotters. Text needs a TrueType font: the
//! first of `LOADGEN_FONT` and the usual DejaVu locations that exists.

use std::path::Path;

use plotters::prelude::*;

use crate::RunReport;

const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

fn load_font() -> anyhow::Result<()> {
    let candidates = std::env::var("LOADGEN_FONT")
        .into_iter()
        .chain(FONTS.map(String::from));
    for path in candidates {
        if let Ok(bytes) = std::fs::read(&path) {
            // The font lives as long as the program: plotters keeps a reference.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| anyhow::anyhow!("{path} is not a usable font"))?;
            return Ok(());
        }
    }
    anyhow::bail!(
        "no TrueType font found for the plot's text; set LOADGEN_FONT (e.g. fonts-dejavu-core)"
    )
}

/// p50, p90 and p99 (ms, log scale) against offered orders/s.
pub fn latency_vs_load(runs: &[RunReport], path: &Path) -> anyhow::Result<()> {
    load_font()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let points: Vec<(f64, [f64; 3])> = runs
        .iter()
        .filter_map(|r| Some((r.offered_per_sec? as f64, [r.p50_ms, r.p90_ms, r.p99_ms])))
        .collect();
    anyhow::ensure!(!points.is_empty(), "a plot needs open-loop runs (--sweep)");
    let max_x = points.iter().map(|p| p.0).fold(1.0, f64::max) * 1.05;
    let max_y = points.iter().flat_map(|p| p.1).fold(1.0, f64::max).max(1.0) * 1.5;
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("OMS: POST → final status latency", ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..max_x, (0.1..max_y).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("offered load (orders/s)")
        .y_desc("latency (ms)")
        .draw()?;
    let series = [("p50", BLUE), ("p90", GREEN), ("p99", RED)];
    for (i, (label, color)) in series.into_iter().enumerate() {
        let line: Vec<(f64, f64)> = points.iter().map(|(x, y)| (*x, y[i].max(0.1))).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        chart.draw_series(line.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
