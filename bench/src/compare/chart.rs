//! `chart.svg`: server CPU per answered query and answered qps, per server.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::{
    coord::Shift,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::report::{Results, Run};

const COLORS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
];

/// One bar per server and series.
struct Groups {
    title: &'static str,
    names: Vec<String>,
    series: Vec<(&'static str, Vec<Option<f64>>)>,
}

impl Groups {
    fn new(
        results: &Results,
        title: &'static str,
        series: &[(&'static str, &str)],
        metric: fn(&Run) -> Option<f64>,
    ) -> Self {
        let measured: Vec<_> = results
            .contenders
            .iter()
            .filter(|c| !c.runs.is_empty())
            .collect();
        Self {
            title,
            names: measured.iter().map(|c| c.name.clone()).collect(),
            series: series
                .iter()
                .map(|&(label, scenario)| {
                    let values = measured
                        .iter()
                        .map(|c| {
                            c.runs
                                .iter()
                                .find(|r| r.scenario == scenario)
                                .and_then(metric)
                        })
                        .collect();
                    (label, values)
                })
                .collect(),
        }
    }
}

pub fn write(results: &Results, path: &Path) -> Result<()> {
    let cost = Groups::new(
        results,
        "Server CPU per answered query, 100% hits (ns, lower is better)",
        &[
            ("dnsperf, IPv4 A", "hits-v4"),
            ("dnsperf, IPv6 A/AAAA", "hits-v6"),
            ("kxdpgun, IPv4 A", "kxdpgun"),
        ],
        |r| r.cpu.ns_per_answer,
    );
    let qps = Groups::new(
        results,
        "Answered queries per second (higher is better)",
        &[
            ("dnsperf, 100% hits IPv4", "hits-v4"),
            ("dnsperf, 100% hits IPv6", "hits-v6"),
            ("dnsperf, realistic mix", "mix"),
            ("kxdpgun, 100% hits IPv4", "kxdpgun"),
        ],
        |r| Some(r.outcome.qps),
    );
    let root = SVGBackend::new(path, (1100, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (top, bottom) = root.split_vertically(450);
    draw(&top, &cost)?;
    draw(&bottom, &qps)?;
    root.present().map_err(|e| anyhow!("{e}"))
}

fn draw(area: &DrawingArea<SVGBackend, Shift>, g: &Groups) -> Result<()> {
    let err = |e: DrawingAreaErrorKind<_>| anyhow!("drawing {}: {e}", g.title);
    let max = g
        .series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b));
    let n = g.names.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(g.title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(30)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..(max * 1.4).max(1.0))
        .map_err(err)?;
    let names = g.names.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(err)?;
    let width = 0.8 / g.series.len() as f64;
    for (j, (label, values)) in g.series.iter().enumerate() {
        let color = COLORS[j % COLORS.len()];
        let bars = values.iter().enumerate().filter_map(|(i, v)| {
            let left = i as f64 - 0.4 + j as f64 * width;
            Some(Rectangle::new(
                [(left, 0.0), (left + width, (*v)?)],
                color.filled(),
            ))
        });
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(*label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        let style = ("sans-serif", 12)
            .into_font()
            .into_text_style(area)
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        let texts = values.iter().enumerate().filter_map(|(i, v)| {
            let centre = i as f64 - 0.4 + (j as f64 + 0.5) * width;
            Some(Text::new(short((*v)?), (centre, (*v)?), style.clone()))
        });
        chart.draw_series(texts).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// 1234567 -> "1.2M", 45678 -> "46k", 312 -> "312".
fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::report::tests::sample;

    #[test]
    fn chart_has_a_bar_and_label_per_value() {
        let dir = std::env::temp_dir().join(format!("dnsxdp-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chart.svg");
        write(&sample(), &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.starts_with("<svg"));
        for text in ["dnsxdp (XDP)", "Unbound", "8300", "900k", "kxdpgun, IPv4 A"] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(
            !svg.contains("Knot Resolver"),
            "skipped servers get no bars"
        );
    }

    #[test]
    fn short_numbers() {
        assert_eq!(short(1_234_567.0), "1.2M");
        assert_eq!(short(45_678.0), "46k");
        assert_eq!(short(312.4), "312");
    }
}
