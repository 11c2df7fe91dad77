//! SVG reports with plotters (SVG text needs no font files, so nothing depends on the
//! system's fonts): a run's throughput and latency over time with its percentile curve; a
//! table and chart across the runs of a sweep or a comparison.

use std::path::Path;

use plotters::prelude::*;

use crate::result::RunResult;

const WIDTH: u32 = 1100;

fn plot_error<E: std::fmt::Display>(error: E) -> String {
    format!("cannot draw the report: {error}")
}

/// Throughput and produce p50/p99 per second, and the latency percentile curves.
pub fn run_svg(result: &RunResult, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (WIDTH, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let title = format!("loadgen: {}", result.workload.label());
    let root = root
        .titled(&title, ("sans-serif", 18))
        .map_err(plot_error)?;
    let areas = root.split_evenly((3, 1));
    let series = &result.series;
    let t_max = series.last().map_or(1.0, |s| s.t).max(1.0);

    // Throughput over time.
    let offered = result.produced.offered_per_s;
    let rate_max = series
        .iter()
        .map(|s| s.produced_per_s.max(s.consumed_per_s))
        .fold(offered.unwrap_or(1.0), f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&areas[0])
        .caption("records per second", ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..t_max, 0.0..rate_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(LineSeries::new(
            series.iter().map(|s| (s.t, s.produced_per_s)),
            &BLUE,
        ))
        .map_err(plot_error)?
        .label("produced (acknowledged)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    if let Some(offered) = offered {
        chart
            .draw_series(LineSeries::new(
                [(0.0, offered), (t_max, offered)],
                RED.stroke_width(1),
            ))
            .map_err(plot_error)?
            .label("offered")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    }
    chart
        .draw_series(LineSeries::new(
            series.iter().map(|s| (s.t, s.consumed_per_s)),
            &GREEN,
        ))
        .map_err(plot_error)?
        .label("consumed")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(plot_error)?;

    // Produce latency per second.
    let finite = |v: f64| if v.is_finite() { Some(v) } else { None };
    let latency_max = series
        .iter()
        .filter_map(|s| finite(s.produce_p99_ms))
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&areas[1])
        .caption(
            "produce latency per second (ms, from intended send time)",
            ("sans-serif", 15),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..t_max, 0.0..latency_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .draw()
        .map_err(plot_error)?;
    for (name, color, pick) in [
        (
            "p50",
            BLUE,
            (|s: &crate::result::Second| s.produce_p50_ms) as fn(&crate::result::Second) -> f64,
        ),
        ("p99", RED, |s: &crate::result::Second| s.produce_p99_ms),
    ] {
        chart
            .draw_series(LineSeries::new(
                series
                    .iter()
                    .filter_map(|s| finite(pick(s)).map(|v| (s.t, v))),
                &color,
            ))
            .map_err(plot_error)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(plot_error)?;

    // Percentile curves: x is "nines" (-log10(1 - q)), y is ms on a log scale.
    type Curve<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);
    let curves: Vec<Curve> = [
        ("produce", BLUE, result.produce_latency.as_ref()),
        ("end-to-end", GREEN, result.end_to_end_latency.as_ref()),
    ]
    .into_iter()
    .filter_map(|(name, color, latency)| {
        latency.map(|l| {
            let points = l
                .curve
                .iter()
                .filter(|(q, _)| *q < 1.0)
                .map(|(q, v)| (-(1.0 - q).log10(), v.max(0.001)))
                .collect();
            (name, color, points)
        })
    })
    .collect();
    let y_max = curves
        .iter()
        .flat_map(|(_, _, points)| points.iter().map(|(_, v)| *v))
        .fold(1.0, f64::max)
        * 2.0;
    let mut chart = ChartBuilder::on(&areas[2])
        .caption(
            "latency percentiles (ms): x = 1 (p90), 2 (p99), 3 (p99.9) ...",
            ("sans-serif", 15),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..5.2, (0.01..y_max).log_scale())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("nines")
        .draw()
        .map_err(plot_error)?;
    for (name, color, points) in curves {
        chart
            .draw_series(LineSeries::new(points.clone(), &color))
            .map_err(plot_error)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

/// One row per run: the table of a sweep or a comparison, in markdown.
pub fn table(rows: &[(String, &RunResult)]) -> String {
    let mut out = String::from(
        "| run | msg/s | MB/s | produce p50 ms | p99 ms | p99.9 ms | e2e p99 ms | records per broker CPU s | verdict |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for (name, r) in rows {
        let l = r.produce_latency.as_ref();
        let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        out.push_str(&format!(
            "| {name} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} |\n",
            r.produced.records_per_s,
            r.produced.mb_per_s,
            cell(l.map(|l| l.p50_ms)),
            cell(l.map(|l| l.p99_ms)),
            cell(l.map(|l| l.p999_ms)),
            cell(r.end_to_end_latency.as_ref().map(|l| l.p99_ms)),
            r.cpu
                .records_per_broker_cpu_s
                .map_or("-".to_string(), |v| format!("{v:.0}")),
            if r.pass { "PASS" } else { "FAIL" }
        ));
    }
    out
}

/// The figures of a comparison, one row per broker, then (with two or more) the first
/// broker's figure divided by each other's: msg/s achieved, produce and end-to-end latency
/// percentiles, broker CPU, records per broker CPU second, broker memory.
pub fn compare_table(rows: &[(String, &RunResult)]) -> String {
    let mut out = String::from(
        "| broker | msg/s acked | produce p50 / p99 / p99.9 ms | e2e p50 / p99 / p99.9 ms | broker CPU s | records per broker CPU s | broker RSS / peak MiB | checks | verdict |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let figures = |r: &RunResult| -> [Option<f64>; 11] {
        let p = r.produce_latency.as_ref();
        let e = r.end_to_end_latency.as_ref();
        let mib = |b: Option<u64>| b.map(|b| b as f64 / (1024.0 * 1024.0));
        [
            Some(r.produced.records_per_s),
            p.map(|l| l.p50_ms),
            p.map(|l| l.p99_ms),
            p.map(|l| l.p999_ms),
            e.map(|l| l.p50_ms),
            e.map(|l| l.p99_ms),
            e.map(|l| l.p999_ms),
            r.cpu.broker_s,
            r.cpu.records_per_broker_cpu_s,
            mib(r.cpu.broker_rss_bytes),
            mib(r.cpu.broker_peak_rss_bytes),
        ]
    };
    let row = |f: &[Option<f64>; 11], decimals: [usize; 11]| -> Vec<String> {
        f.iter()
            .zip(decimals)
            .map(|(v, d)| v.map_or("-".to_string(), |v| format!("{v:.d$}")))
            .collect()
    };
    const FIGURES: [usize; 11] = [0, 2, 2, 2, 2, 2, 2, 1, 0, 0, 0];
    let line = |name: &str, c: &[String], checks: &str, verdict: &str| {
        format!(
            "| {name} | {} | {} / {} / {} | {} / {} / {} | {} | {} | {} / {} | {checks} | {verdict} |\n",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10]
        )
    };
    for (name, r) in rows {
        let checks = if !r.checks.checked {
            "not checked".to_string()
        } else if r.checks.clean() {
            "all delivered once, in order".to_string()
        } else {
            format!(
                "{} missing, {} repeated, {} out of order, {} errors",
                r.checks.missing,
                r.checks.repeated,
                r.checks.out_of_order,
                r.checks.errors.len()
            )
        };
        let verdict = if r.pass { "PASS" } else { "FAIL" };
        out.push_str(&line(name, &row(&figures(r), FIGURES), &checks, verdict));
    }
    if let Some(((first_name, first), others)) = rows.split_first() {
        let first = figures(first);
        for (name, r) in others {
            let other = figures(r);
            let mut ratio = [None; 11];
            for (at, slot) in ratio.iter_mut().enumerate() {
                *slot = first[at]
                    .zip(other[at])
                    .filter(|(_, b)| *b > 0.0)
                    .map(|(a, b)| a / b);
            }
            let cells: Vec<String> = ratio.iter().map(|r| ratio_cell(*r)).collect();
            out.push_str(&line(&format!("{first_name}/{name}"), &cells, "", ""));
        }
    }
    out
}

/// A ratio with two decimals, or two significant digits below 0.1 (0.00064, not 0.00).
fn ratio_cell(ratio: Option<f64>) -> String {
    match ratio {
        None => "-".to_string(),
        Some(r) if r >= 0.1 || r == 0.0 => format!("{r:.2}"),
        Some(r) => {
            let decimals = (1.0 - r.log10().floor()) as usize;
            format!("{r:.decimals$}")
        }
    }
}

/// Throughput and produce p99 of each run, side by side.
pub fn runs_svg(title: &str, rows: &[(String, &RunResult)], path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (WIDTH, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let root = root.titled(title, ("sans-serif", 18)).map_err(plot_error)?;
    let areas = root.split_evenly((2, 1));
    let labels: Vec<String> = rows.iter().map(|(name, _)| name.clone()).collect();
    let n = labels.len().max(1) as i32;
    let draw = |area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
                caption: &str,
                values: Vec<f64>,
                color: RGBColor|
     -> Result<(), String> {
        let max = values.iter().copied().fold(1.0, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d((0..(n - 1).max(0)).into_segmented(), 0.0..max)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(labels.len() + 1)
            .x_label_formatter(&|segment| match segment {
                SegmentValue::CenterOf(at) => labels.get(*at as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(color.filled())
                    .margin(12)
                    .data(values.iter().enumerate().map(|(at, v)| (at as i32, *v))),
            )
            .map_err(plot_error)?;
        Ok(())
    };
    draw(
        &areas[0],
        "acknowledged records per second",
        rows.iter().map(|(_, r)| r.produced.records_per_s).collect(),
        BLUE,
    )?;
    draw(
        &areas[1],
        "produce p99 (ms)",
        rows.iter()
            .map(|(_, r)| r.produce_latency.as_ref().map_or(0.0, |l| l.p99_ms))
            .collect(),
        RED,
    )?;
    root.present().map_err(plot_error)?;
    Ok(())
}
