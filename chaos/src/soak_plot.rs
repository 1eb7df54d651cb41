//! The soak's picture: time to restore of every fault over the run, as Jepsen draws its
//! latencies: one point per fault at the moment it was made, its height the time the
//! harness's own checks took to pass again; faults that did not come back (the controls,
//! and any failure) are marked at the top in red, so a reader sees at once where they were.

use plotters::prelude::*;

/// What the plot needs of one fault (from a [`crate::soak::FaultRecord`] or its JSON line).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub fault: String,
    pub injected_unix_ms: u64,
    pub restored_ms: Option<u64>,
}

impl Point {
    /// From a fault's JSON line; `None` for a fault that was not made.
    pub fn from_json(v: &serde_json::Value) -> Option<Self> {
        if !v["not_made"].is_null() {
            return None;
        }
        Some(Self {
            fault: v["fault"].as_str()?.to_string(),
            injected_unix_ms: v["injected_unix_ms"].as_u64().filter(|t| *t > 0)?,
            restored_ms: v["restored_ms"].as_u64(),
        })
    }
}

/// Draws the records of a soak (its `.jsonl`, as a killed soak leaves it) into `svg`.
pub fn plot_records(jsonl: &std::path::Path, svg: &std::path::Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(jsonl).map_err(|e| format!("{}: {e}", jsonl.display()))?;
    let points: Vec<Point> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Point::from_json(&v))
        .collect();
    std::fs::write(svg, restore_svg(&points)?).map_err(|e| format!("{}: {e}", svg.display()))?;
    Ok(points.len())
}

/// The plot as an SVG document; `Err` when plotters cannot draw it.
pub fn restore_svg(made: &[Point]) -> Result<String, String> {
    let start = made.iter().map(|r| r.injected_unix_ms).min().unwrap_or(0);
    let at = |r: &Point| r.injected_unix_ms.saturating_sub(start) as f64 / 60_000.0;
    let x_max = made.iter().map(at).fold(1.0_f64, f64::max) * 1.02;
    let y_max = made.iter().filter_map(|r| r.restored_ms).map(|ms| ms as f64 / 1000.0).fold(1.0_f64, f64::max) * 1.15;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 420)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| e.to_string();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("time to restore per fault (harness clock)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("minutes into the soak (when the fault was made)")
            .y_desc("seconds to restore")
            .draw()
            .map_err(err)?;
        // One colour per kind, in the order kinds first appear.
        let mut kinds: Vec<&str> = Vec::new();
        for r in made {
            if !kinds.contains(&r.fault.as_str()) {
                kinds.push(&r.fault);
            }
        }
        for (i, kind) in kinds.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, f64)> = made
                .iter()
                .filter(|r| r.fault == *kind)
                .filter_map(|r| r.restored_ms.map(|ms| (at(r), ms as f64 / 1000.0)))
                .collect();
            chart
                .draw_series(points.into_iter().map(|p| Circle::new(p, 3, colour.filled())))
                .map_err(err)?
                .label(kind.to_string())
                .legend(move |(x, y)| Circle::new((x, y), 3, colour.filled()));
        }
        // Not restored: a red cross at the top (a control, as it must be; anything else,
        // a failure).
        let top = y_max * 0.97;
        let unrestored: Vec<(f64, f64)> =
            made.iter().filter(|r| r.restored_ms.is_none()).map(|r| (at(r), top)).collect();
        if !unrestored.is_empty() {
            chart
                .draw_series(unrestored.into_iter().map(|p| Cross::new(p, 5, RED.stroke_width(2))))
                .map_err(err)?
                .label("not restored")
                .legend(|(x, y)| Cross::new((x, y), 5, RED.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u32, fault: &str, at: u64, restored_ms: Option<u64>) -> Point {
        let line = serde_json::json!({"n": n, "fault": fault, "injected_unix_ms": at, "restored_ms": restored_ms, "not_made": null});
        Point::from_json(&line).expect("made")
    }

    #[test]
    fn test_the_plot_has_a_point_per_restored_fault_and_a_cross_per_control() {
        let records = vec![
            record(1, "api-hang", 1_000_000, Some(900)),
            record(2, "db-freeze", 1_020_000, Some(1_400)),
            record(3, "api-hang", 1_040_000, None),
            record(4, "api-hang", 1_060_000, Some(800)),
        ];
        let svg = restore_svg(&records).expect("drawn");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
        assert!(svg.contains("seconds to restore") && svg.contains("db-freeze"), "axes and legend: {svg}");
        // Three points plus a legend dot for each of the two kinds.
        assert_eq!(svg.matches("<circle").count(), 3 + 2, "{svg}");
        assert!(svg.contains("not restored"), "{svg}");
        let not_made = serde_json::json!({"fault": "disk-full", "injected_unix_ms": 0, "not_made": "no tmpfs"});
        assert_eq!(Point::from_json(&not_made), None);
    }
}
