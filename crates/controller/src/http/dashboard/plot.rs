//! Small SVG line and bar charts, drawn on the server. Hand-written rather than a charting
//! library: four plots of a few hundred points need axes, a polyline and a legend, and SVG in
//! the page works without JavaScript and without a file to vendor.

use super::page::{esc, hhmm};
use mayfly_core::Time;
use std::fmt::Write;

const W: f64 = 600.0;
const H: f64 = 170.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;

/// One series: a name for the legend, a colour class (`c1`…`c4`), and one value per x.
pub struct Series {
    pub name: &'static str,
    pub class: &'static str,
    pub values: Vec<f64>,
}

impl Series {
    pub fn line(name: &'static str, class: &'static str, values: Vec<f64>) -> Series {
        Series {
            name,
            class,
            values,
        }
    }
}

/// A round upper bound for the y axis: 1, 2 or 5 times a power of ten.
fn nice_max(max: f64) -> f64 {
    if !max.is_finite() || max <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * p)
}

fn label(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// A figure with a title, the chart (lines, or bars when `bars`), and a legend that also says
/// each series' latest value: the text a screen reader reads instead of the drawing.
pub fn chart(title: &str, xs: &[i64], series: &[Series], bars: bool) -> String {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0, f64::max);
    let top = nice_max(max);
    let (x0, x1) = (
        xs.first().copied().unwrap_or(0),
        xs.last().copied().unwrap_or(0),
    );
    let span = (x1 - x0).max(1) as f64;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x_of = |x: i64| {
        if xs.len() <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + (x - x0) as f64 / span * plot_w
        }
    };
    let y_of = |v: f64| TOP + plot_h - v / top * plot_h;
    let summary: Vec<String> = series
        .iter()
        .map(|s| {
            format!(
                "{} now {}, highest {}",
                s.name,
                label(s.values.last().copied().unwrap_or(0.0)),
                label(s.values.iter().copied().fold(0.0, f64::max))
            )
        })
        .collect();
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<figure class=\"chart\"><figcaption>{t}</figcaption>\
         <svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{t}: {s}\" preserveAspectRatio=\"none\">",
        t = esc(title),
        s = esc(&summary.join("; "))
    );
    // Grid and y labels: 0, half, top.
    for frac in [0.0, 0.5, 1.0] {
        let y = y_of(top * frac);
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text class=\"axis\" x=\"{lx}\" y=\"{ty:.1}\" text-anchor=\"end\">{l}</text>",
            x2 = W - RIGHT,
            lx = LEFT - 4.0,
            ty = y + 4.0,
            l = label(top * frac)
        );
    }
    let _ = write!(
        svg,
        "<text class=\"axis\" x=\"{LEFT}\" y=\"{y}\">{a} UTC</text>\
         <text class=\"axis\" x=\"{x}\" y=\"{y}\" text-anchor=\"end\">{b}</text>",
        y = H - 6.0,
        a = hhmm(Time(x0)),
        x = W - RIGHT,
        b = hhmm(Time(x1)),
    );
    for s in series {
        if bars {
            let n = s.values.len().max(1) as f64;
            let w = (plot_w / n * 0.7).max(2.0);
            for (i, v) in s.values.iter().enumerate() {
                let cx = if xs.len() <= 1 {
                    LEFT + plot_w / 2.0
                } else {
                    LEFT + (i as f64 + 0.5) / n * plot_w
                };
                let y = y_of(*v);
                let _ = write!(
                    svg,
                    "<rect class=\"{c}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\"/>",
                    c = s.class,
                    x = cx - w / 2.0,
                    h = (TOP + plot_h - y).max(0.0),
                );
            }
        } else {
            let points: Vec<String> = xs
                .iter()
                .zip(&s.values)
                .map(|(x, v)| format!("{:.1},{:.1}", x_of(*x), y_of(*v)))
                .collect();
            let _ = write!(
                svg,
                "<polyline class=\"{c}\" points=\"{p}\"/>",
                c = s.class,
                p = points.join(" ")
            );
        }
    }
    svg.push_str("</svg><ul class=\"legend\">");
    for (s, text) in series.iter().zip(&summary) {
        let _ = write!(
            svg,
            "<li><span class=\"key {}\" aria-hidden=\"true\"></span>{}</li>",
            s.class,
            esc(text)
        );
    }
    svg.push_str("</ul></figure>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axis_ends_on_a_round_number_above_the_highest_value() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.0), 5.0);
        assert_eq!(nice_max(17.0), 20.0);
        assert_eq!(nice_max(0.042), 0.05);
        assert_eq!(nice_max(100.0), 100.0);
    }

    #[test]
    fn a_chart_draws_every_point_and_says_the_latest_value() {
        let svg = chart(
            "Queue wait",
            &[0, 60_000, 120_000],
            &[Series::line("wait", "c1", vec![0.0, 30.0, 12.0])],
            false,
        );
        assert!(
            svg.contains("points=\"48.0,148.0 320.0,65.2 592.0,114.9\""),
            "{svg}"
        );
        assert!(svg.contains("wait now 12, highest 30"));
        let bars = chart("Served", &[0], &[Series::line("n", "c2", vec![4.0])], true);
        assert_eq!(bars.matches("<rect").count(), 1);
    }
}
