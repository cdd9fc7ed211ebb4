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

/// Per variant, the rows with the most clients (the throughput each size reached).
fn peak_rows(r: &BenchReport) -> Vec<(String, Vec<&RunResult>)> {
    let mut variants: Vec<String> = r.results.iter().map(|x| x.variant.clone()).collect();
    variants.sort();
    variants.dedup();
    let most = r.results.iter().map(|x| x.clients).max().unwrap_or(1);
    variants
        .into_iter()
        .map(|v| {
            let rows = r
                .results
                .iter()
                .filter(|x| x.variant == v && x.clients == most)
                .collect();
            (v, rows)
        })
        .collect()
}

type Metric = Box<dyn Fn(&RunResult) -> f64>;

/// Two panels: committed requests/s against cluster size (with the crypto bound), and
/// node CPU per request against cluster size.
pub fn plot(r: &BenchReport, path: &Path) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let rows = peak_rows(r);
    let xs: Vec<f64> = r.results.iter().map(|x| x.nodes as f64).collect();
    let (xmin, xmax) = xs
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let (xmin, xmax) = (xmin - 1.0, xmax + 1.0);
    // Scaled to what is drawn: the rows with the most clients.
    let top = |f: &dyn Fn(&RunResult) -> f64| {
        rows.iter()
            .flat_map(|(_, rs)| rs.iter())
            .map(|x| f(x))
            .fold(1.0f64, f64::max)
            * 1.15
    };
    let root = SVGBackend::new(path, (1100, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(550);
    let panels: [(&str, &str, Metric, _); 2] = [
        (
            "committed requests/s (most clients)",
            "req/s",
            Box::new(|x: &RunResult| x.throughput_rps),
            &left,
        ),
        (
            "node CPU per committed request (most clients)",
            "CPU µs / request",
            Box::new(|x: &RunResult| x.cpu_us_per_req),
            &right,
        ),
    ];
    for (k, (title, ylabel, f, area)) in panels.into_iter().enumerate() {
        let ymax = if k == 0 {
            top(&|x| x.throughput_rps.max(x.crypto_bound_rps))
        } else {
            top(&*f)
        };
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(xmin..xmax, 0f64..ymax)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("nodes")
            .y_desc(ylabel)
            .x_labels(8)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(|e| err(&e))?;
        for (v, rs) in &rows {
            let c = color(v);
            let pts: Vec<(f64, f64)> = rs.iter().map(|x| (x.nodes as f64, f(x))).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(v.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(|e| err(&e))?;
        }
        if k == 0 {
            let mut bound: Vec<(f64, f64)> = r
                .results
                .iter()
                .map(|x| (x.nodes as f64, x.crypto_bound_rps))
                .collect();
            bound.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
            bound.dedup();
            chart
                .draw_series(LineSeries::new(bound, BLACK.stroke_width(1)))
                .map_err(|e| err(&e))?
                .label("crypto bound")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
