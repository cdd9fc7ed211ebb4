//! The benchmark's outputs: a table for the terminal, JSON for tools, an SVG plot.

use super::{BenchReport, RunResult};
use plotters::prelude::*;
use std::path::Path;

pub fn table(r: &BenchReport) -> String {
    let mut s = format!(
        "machine: {} cores; Ed25519 sign {:.1} µs, ZIP-215 verify {:.1} µs single, {:.1} µs per signature in batches of 64\n\n",
        r.machine.cores, r.machine.sign_us, r.machine.verify_us, r.machine.verify_batch_us
    );
    s.push_str(&format!(
        "{:<9} {:>5} {:>7} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8} {:>10} {:>9} {:>9} {:>8} {:>10} {:>7} {:>10} {:>7}\n",
        "variant",
        "nodes",
        "clients",
        "verify",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "cpu µs/req",
        "client µs",
        "B/req",
        "msgs/req",
        "bound r/s",
        "% bound",
        "batched",
        "% b."
    ));
    for x in &r.results {
        s.push_str(&format!(
            "{:<9} {:>5} {:>7} {:>7} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.1} {:>10.0} {:>9.0} {:>9.0} {:>8.1} {:>10.0} {:>6.0}% {:>10.0} {:>6.0}%",
            x.variant,
            x.nodes,
            x.clients,
            x.client_verify.map_or("-", |v| v.name()),
            x.throughput_rps,
            x.p50_ms,
            x.p90_ms,
            x.p99_ms,
            x.max_ms,
            x.cpu_us_per_req,
            x.client_cpu_us_per_req,
            x.bytes_per_req,
            x.msgs_per_req,
            x.crypto_bound_rps,
            100.0 * x.throughput_rps / x.crypto_bound_rps,
            batched_bound(r, x),
            100.0 * x.throughput_rps / batched_bound(r, x).max(1e-9)
        ));
        if let Some(ms) = x.recovery_ms {
            s.push_str(&format!("  (recovered after {ms:.0} ms)"));
        }
        if x.failed > 0 {
            s.push_str(&format!(
                "  ({} requests without an agreed answer)",
                x.failed
            ));
        }
        s.push('\n');
        if let Some(c) = &x.cost {
            s.push_str(&format!("    node CPU µs/req: {}\n", c.line()));
        }
    }
    s.push_str(
        "\nnode CPU µs/req: the nodes' CPU per request from counters around each call (sign, \
         verify one by one, verify in batches with signatures per request, SHA-256, postcard \
         encode/decode, fsync's CPU and its wall time apart); rest: the CPU they do not \
         account for (protocol, transport: QUIC, TLS, syscalls). bound: cores / (client sign + \
         n x verify); batched: the same with ZIP-215 batched verification.\n",
    );
    s
}

/// The crypto bound with every verification batched (cores / (sign + n × batched
/// verify)), on the cores the single bound assumed; 0 for reports without the figure.
pub fn batched_bound(r: &BenchReport, x: &RunResult) -> f64 {
    let m = &r.machine;
    if m.verify_batch_us <= 0.0 || x.crypto_bound_rps <= 0.0 {
        return 0.0;
    }
    // The single bound is cores / (sign + n × verify): recover its cores from it.
    let cores = x.crypto_bound_rps * (m.sign_us + x.nodes as f64 * m.verify_us) / 1e6;
    cores * 1e6 / (m.sign_us + x.nodes as f64 * m.verify_batch_us)
}

fn color(variant: &str) -> RGBColor {
    match variant {
        "raft" => RGBColor(0x1f, 0x77, 0xb4),
        "tangaroa" => RGBColor(0xff, 0x7f, 0x0e),
        _ => RGBColor(0x2c, 0xa0, 0x2c),
    }
}

/// One line of the plot: a variant (and, when a report compares them, a way of verifying
/// client requests), at the most clients the report has.
struct Series<'a> {
    label: String,
    color: RGBColor,
    rows: Vec<&'a RunResult>,
}

/// Per variant (and verification mode), the rows with the most clients (the throughput
/// each size reached), sorted by cluster size.
fn peak_series(r: &BenchReport) -> Vec<Series<'_>> {
    let most = r.results.iter().map(|x| x.clients).max().unwrap_or(1);
    let mut keys: Vec<(String, Option<&'static str>)> = r
        .results
        .iter()
        .map(|x| (x.variant.clone(), x.client_verify.map(|v| v.name())))
        .collect();
    keys.sort();
    keys.dedup();
    let modes = {
        let mut m: Vec<_> = keys.iter().map(|k| k.1).collect();
        m.sort();
        m.dedup();
        m.len()
    };
    keys.into_iter()
        .map(|(variant, mode)| {
            let mut rows: Vec<&RunResult> = r
                .results
                .iter()
                .filter(|x| {
                    x.variant == variant
                        && x.client_verify.map(|v| v.name()) == mode
                        && x.clients == most
                })
                .collect();
            rows.sort_by_key(|x| x.nodes);
            let base = color(&variant);
            let (label, color) = match mode {
                // Only where the report compares modes; the single one drawn paler.
                Some(m) if modes > 1 => {
                    let c = if m == "single" { pale(base) } else { base };
                    (format!("{variant} ({m})"), c)
                }
                _ => (variant, base),
            };
            Series { label, color, rows }
        })
        .filter(|s| !s.rows.is_empty())
        .collect()
}

fn pale(c: RGBColor) -> RGBColor {
    let mix = |x: u8| ((x as u16 + 2 * 255) / 3) as u8;
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

type Metric = Box<dyn Fn(&RunResult) -> f64>;

/// Height of the strip under the panels that holds the legend: drawn apart, it never
/// hides a line.
const LEGEND_HEIGHT: u32 = 48;
const PANEL_WIDTH: u32 = 500;
const PANEL_HEIGHT: u32 = 420;

/// Three panels against cluster size, at the most clients: committed requests/s (with
/// the single and batched crypto bounds), node CPU per request, and latency (p50 solid,
/// p99 thin). A report of a single size draws points rather than lines.
pub fn plot(r: &BenchReport, path: &Path) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let series = peak_series(r);
    let sizes: Vec<usize> = series
        .iter()
        .flat_map(|s| s.rows.iter().map(|x| x.nodes))
        .collect();
    let (Some(&lo), Some(&hi)) = (sizes.iter().min(), sizes.iter().max()) else {
        return Err(err(&"no results to plot"));
    };
    let (xmin, xmax) = (lo as f64 - 1.0, hi as f64 + 1.0);
    let all = || series.iter().flat_map(|s| s.rows.iter().copied());
    let top = |f: &dyn Fn(&RunResult) -> f64| all().map(f).fold(1.0f64, f64::max) * 1.15;
    let root =
        SVGBackend::new(path, (3 * PANEL_WIDTH, PANEL_HEIGHT + LEGEND_HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (charts, legend) = root.split_vertically(PANEL_HEIGHT);
    let areas = charts.split_evenly((1, 3));
    let panels: [(&str, &str, Metric, f64); 3] = [
        (
            "committed requests/s (most clients)",
            "req/s",
            Box::new(|x: &RunResult| x.throughput_rps),
            top(&|x| {
                x.throughput_rps
                    .max(x.crypto_bound_rps)
                    .max(batched_bound(r, x))
            }),
        ),
        (
            "node CPU per committed request",
            "CPU µs / request",
            Box::new(|x: &RunResult| x.cpu_us_per_req),
            top(&|x| x.cpu_us_per_req),
        ),
        (
            "latency p50 (thick) and p99 (thin)",
            "ms",
            Box::new(|x: &RunResult| x.p50_ms),
            top(&|x| x.p99_ms),
        ),
    ];
    for (k, ((title, ylabel, f, ymax), area)) in panels.into_iter().zip(&areas).enumerate() {
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(xmin..xmax, 0f64..ymax)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("nodes")
            .y_desc(ylabel)
            // One tick per whole node count: fractional ticks printed as repeated sizes.
            .x_labels((xmax - xmin) as usize + 1)
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-6 {
                    format!("{x:.0}")
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(|e| err(&e))?;
        for s in &series {
            let pts: Vec<(f64, f64)> = s.rows.iter().map(|x| (x.nodes as f64, f(x))).collect();
            draw_line(&mut chart, &pts, s.color, 2).map_err(|e| err(&e))?;
            if k == 2 {
                let p99: Vec<(f64, f64)> =
                    s.rows.iter().map(|x| (x.nodes as f64, x.p99_ms)).collect();
                draw_line(&mut chart, &p99, s.color, 1).map_err(|e| err(&e))?;
            }
        }
        if k == 0 {
            let bound = |g: &dyn Fn(&RunResult) -> f64| {
                let mut b: Vec<(f64, f64)> = r
                    .results
                    .iter()
                    .filter(|x| x.variant != "raft")
                    .map(|x| (x.nodes as f64, g(x)))
                    .filter(|p| p.1 > 0.0)
                    .collect();
                b.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
                b.dedup_by(|a, b| a.0 == b.0);
                b
            };
            draw_line(&mut chart, &bound(&|x| x.crypto_bound_rps), BLACK, 1)
                .map_err(|e| err(&e))?;
            let grey = RGBColor(0x80, 0x80, 0x80);
            draw_line(&mut chart, &bound(&|x| batched_bound(r, x)), grey, 1)
                .map_err(|e| err(&e))?;
        }
    }
    draw_legend(&legend, &series).map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A line through `pts` with a marker on each, so that a single point still shows.
fn draw_line(
    chart: &mut Chart,
    pts: &[(f64, f64)],
    c: RGBColor,
    width: u32,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    chart.draw_series(LineSeries::new(pts.to_vec(), c.stroke_width(width)))?;
    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 2 + width, c.filled())))?;
    Ok(())
}

/// The legend, in its own strip under the panels.
fn draw_legend(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    series: &[Series],
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    let grey = RGBColor(0x80, 0x80, 0x80);
    let entries = series.iter().map(|s| (s.label.clone(), s.color)).chain([
        ("crypto bound (single)".to_string(), BLACK),
        ("crypto bound (batched)".to_string(), grey),
    ]);
    let step = 3 * PANEL_WIDTH as i32 / (series.len() as i32 + 2).max(1);
    for (i, (label, c)) in entries.enumerate() {
        let x = 20 + i as i32 * step;
        let y = LEGEND_HEIGHT as i32 / 2;
        area.draw(&PathElement::new(
            vec![(x, y), (x + 28, y)],
            c.stroke_width(3),
        ))?;
        area.draw(&Text::new(label, (x + 34, y - 8), ("sans-serif", 15)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Machine;

    fn row(variant: &str, nodes: usize) -> RunResult {
        RunResult {
            variant: variant.into(),
            nodes,
            clients: 8,
            byzantine: vec![],
            throughput_rps: 1000.0,
            p50_ms: 2.0,
            p90_ms: 3.0,
            p99_ms: 5.0,
            max_ms: 9.0,
            cpu_us_per_req: 100.0,
            client_cpu_us_per_req: 10.0,
            bytes_per_req: 300.0,
            msgs_per_req: 4.0,
            crypto_bound_rps: 5000.0,
            requests: 5000,
            failed: 0,
            recovery_ms: None,
            timeline: vec![],
            in_process: None,
            cost: None,
            client_verify: None,
            disk_bytes: vec![],
            log_base: vec![],
        }
    }

    /// A report of one run (one size, one variant) still plots: its points, whole-number
    /// node ticks, the legend in its own strip, and latency beside throughput and CPU.
    #[test]
    fn a_single_run_plots_with_its_legend_and_latency() {
        let report = BenchReport {
            machine: Machine {
                cores: 2,
                sign_us: 20.0,
                verify_us: 40.0,
                verify_batch_us: 20.0,
            },
            results: vec![row("bft", 4)],
        };
        let path = std::env::temp_dir().join(format!("tangaroa-plot-{}.svg", std::process::id()));
        plot(&report, &path).expect("plots");
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let texts: Vec<&str> = svg
            .split("</text>")
            .filter_map(|t| t.rsplit('>').next())
            .map(str::trim)
            .collect();
        for text in [
            "latency p50 (thick) and p99 (thin)",
            "crypto bound (batched)",
            "bft",
        ] {
            assert!(texts.contains(&text), "{text} missing from {texts:?}");
        }
        assert!(svg.contains("<circle"), "a single point is drawn");
        assert!(
            !texts.contains(&"3.5") && !texts.contains(&"4.5"),
            "fractional node ticks"
        );
        assert!(plot(
            &BenchReport {
                machine: report.machine.clone(),
                results: vec![]
            },
            &path
        )
        .is_err());
    }
}
