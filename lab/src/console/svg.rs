//! Charts drawn in Rust as inline SVG: line charts of PromQL series, a
//! trace's waterfall, a profile's flame graph. Pure functions of their
//! data, so they are tested without a browser; each carries a `<title>` and
//! a text alternative for screen readers.

use std::fmt::Write;

use super::html::escape;

/// Colours that stay apart for common colour blindness (Okabe–Ito), all
/// readable on light and dark backgrounds.
const PALETTE: &[&str] = &[
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#8c6d31", "#999999",
];

/// One line of a chart: points of (Unix seconds, value).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// The largest finite value, if any.
    pub fn max(&self) -> Option<f64> {
        self.points
            .iter()
            .map(|p| p.1)
            .filter(|v| v.is_finite())
            .reduce(f64::max)
    }
}

/// A number short enough for an axis: 1.2k, 0.35, 12.
pub fn short(value: f64) -> String {
    let abs = value.abs();
    if abs >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if abs >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else if abs >= 10.0 || abs == 0.0 {
        format!("{value:.0}")
    } else if abs >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn hh_mm(secs: f64) -> String {
    let day = (secs as i64).rem_euclid(86_400);
    format!("{:02}:{:02}", day / 3600, day % 3600 / 60)
}

/// A line chart in a `<figure>`: the caption, the SVG, and a legend that
/// names each series with its newest and largest value. Each path carries
/// `data-series` and `data-max` so a reader (or a test) can find a series.
pub fn line_chart(id: &str, caption: &str, unit: &str, series: &[Series]) -> String {
    const W: f64 = 640.0;
    const H: f64 = 240.0;
    const LEFT: f64 = 48.0;
    const RIGHT: f64 = 12.0;
    const TOP: f64 = 12.0;
    const BOTTOM: f64 = 28.0;
    let finite = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.1.is_finite());
    let (mut t0, mut t1, mut vmax) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    for &(t, v) in finite {
        t0 = t0.min(t);
        t1 = t1.max(t);
        vmax = vmax.max(v);
    }
    let mut out = format!(
        r#"<figure class="chart" id="{id}"><figcaption>{}</figcaption>"#,
        escape(caption)
    );
    if !t0.is_finite() {
        let _ = write!(
            out,
            r#"<p class="muted">no data in this window</p></figure>"#
        );
        return out;
    }
    if t1 <= t0 {
        t1 = t0 + 1.0;
    }
    if vmax <= 0.0 {
        vmax = 1.0;
    }
    let x = |t: f64| LEFT + (t - t0) / (t1 - t0) * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (1.0 - v / vmax) * (H - TOP - BOTTOM);
    let _ = write!(
        out,
        r#"<svg viewBox="0 0 {W} {H}" role="img" aria-labelledby="{id}-t {id}-d"><title id="{id}-t">{}</title><desc id="{id}-d">{} series from {} to {}; largest value {} {}</desc>"#,
        escape(caption),
        series.len(),
        hh_mm(t0),
        hh_mm(t1),
        short(vmax),
        escape(unit)
    );
    for frac in [0.0, 0.5, 1.0] {
        let v = vmax * frac;
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 4.0,
            y(v) + 4.0,
            short(v),
            y = y(v)
        );
    }
    let _ = write!(
        out,
        r#"<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{}"/><text x="{LEFT}" y="{}">{}</text><text x="{}" y="{}" text-anchor="end">{}</text><text x="4" y="{TOP}" class="unit">{}</text>"#,
        H - BOTTOM,
        H - 8.0,
        hh_mm(t0),
        W - RIGHT,
        H - 8.0,
        hh_mm(t1),
        escape(unit)
    );
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let mut d = String::new();
        let mut pen_down = false;
        for &(t, v) in &s.points {
            if !v.is_finite() {
                pen_down = false;
                continue;
            }
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if pen_down { "L" } else { "M" },
                x(t),
                y(v)
            );
            pen_down = true;
        }
        let max = s.max().unwrap_or(0.0);
        let _ = write!(
            out,
            r#"<path class="series" d="{d}" fill="none" stroke="{colour}" stroke-width="2" data-series="{}" data-max="{max}"><title>{}: up to {} {}</title></path>"#,
            escape(&s.name),
            escape(&s.name),
            short(max),
            escape(unit)
        );
    }
    out.push_str(r#"</svg><ul class="legend">"#);
    for (i, s) in series.iter().enumerate() {
        let newest = s
            .points
            .iter()
            .rev()
            .find(|p| p.1.is_finite())
            .map_or("—".to_owned(), |p| short(p.1));
        let _ = write!(
            out,
            r#"<li><span class="swatch" style="background:{}" aria-hidden="true"></span>{} — now {newest}, max {}</li>"#,
            PALETTE[i % PALETTE.len()],
            escape(&s.name),
            short(s.max().unwrap_or(0.0))
        );
    }
    out.push_str("</ul></figure>");
    out
}

/// One span of a waterfall, in the order it is drawn (parents before
/// their children).
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub depth: usize,
    pub label: String,
    /// Unix nanoseconds.
    pub start: i64,
    pub end: i64,
    pub error: bool,
    /// The element id of the span's details on the page.
    pub anchor: String,
}

/// A trace as a waterfall: one row per span, indented under its parent, a
/// bar where it ran (red when it failed), each row linking to the span's
/// details.
pub fn waterfall(bars: &[Bar]) -> String {
    const W: f64 = 900.0;
    const LABEL: f64 = 330.0;
    const ROW: f64 = 22.0;
    if bars.is_empty() {
        return r#"<p class="muted">the trace has no spans</p>"#.to_owned();
    }
    let start = bars.iter().map(|b| b.start).min().unwrap_or(0);
    let end = bars.iter().map(|b| b.end).max().unwrap_or(start);
    let total = (end - start).max(1) as f64;
    let height = ROW * bars.len() as f64 + ROW;
    let span_w = W - LABEL - 70.0;
    let mut out = format!(
        r#"<svg class="waterfall" viewBox="0 0 {W} {height}" role="img" aria-labelledby="wf-t"><title id="wf-t">Waterfall of {} spans over {}</title>"#,
        bars.len(),
        crate::render::duration(end - start)
    );
    let _ = write!(
        out,
        r#"<text x="{LABEL}" y="14">0</text><text x="{}" y="14" text-anchor="end">{}</text>"#,
        LABEL + span_w,
        crate::render::duration(end - start)
    );
    for (i, bar) in bars.iter().enumerate() {
        let top = ROW * (i as f64 + 1.0);
        let x = LABEL + (bar.start - start) as f64 / total * span_w;
        let w = ((bar.end - bar.start) as f64 / total * span_w).max(1.5);
        let colour = if bar.error { "#d62728" } else { "#0072b2" };
        let label: String = bar.label.chars().take(48 - bar.depth.min(12) * 2).collect();
        let duration = crate::render::duration(bar.end - bar.start);
        let _ = write!(
            out,
            r##"<a href="#{anchor}"><g class="span{err}"><title>{full} — {duration}{failed}</title><text x="{tx}" y="{ty:.1}">{label}</text><rect x="{x:.1}" y="{ry:.1}" width="{w:.1}" height="{rh}" fill="{colour}" rx="2"/><text x="{dx:.1}" y="{ty:.1}">{duration}</text></g></a>"##,
            anchor = escape(&bar.anchor),
            err = if bar.error { " error" } else { "" },
            full = escape(&bar.label),
            failed = if bar.error { " (failed)" } else { "" },
            tx = 4.0 + bar.depth as f64 * 12.0,
            ty = top + 15.0,
            label = escape(&label),
            ry = top + 4.0,
            rh = ROW - 8.0,
            dx = (x + w + 4.0).min(W - 66.0),
        );
    }
    out.push_str("</svg>");
    out
}

fn warm(name: &str) -> String {
    // A stable colour per function: the same frame looks the same in
    // every graph.
    let hash = name
        .bytes()
        .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
    let hue = 10 + hash % 40;
    let light = 55 + (hash >> 8) % 15;
    format!("hsl({hue},85%,{light}%)")
}

/// A flame graph (icicle: the root on top) from Pyroscope's flamebearer:
/// per level, four numbers per node — x offset from the end of the previous
/// node, total, self, name index.
pub fn flame_graph(names: &[String], levels: &[Vec<i64>], unit: &str) -> String {
    const W: f64 = 1000.0;
    const ROW: f64 = 18.0;
    let total = levels.first().and_then(|l| l.get(1)).copied().unwrap_or(0);
    if total <= 0 {
        return r#"<p class="muted">no samples in this window</p>"#.to_owned();
    }
    let height = ROW * levels.len() as f64;
    let mut out = format!(
        r#"<svg class="flame" viewBox="0 0 {W} {height}" role="img" aria-labelledby="fg-t"><title id="fg-t">Flame graph: {} {} in {} levels</title>"#,
        short(total as f64),
        escape(unit),
        levels.len()
    );
    for (depth, level) in levels.iter().enumerate() {
        let mut x = 0i64;
        for node in level.chunks_exact(4) {
            x += node[0];
            let (value, self_value, name) = (node[1], node[2], node[3]);
            let left = x as f64 / total as f64 * W;
            let width = value as f64 / total as f64 * W;
            x += value;
            if width < 0.5 {
                continue;
            }
            let name = names.get(name as usize).map(String::as_str).unwrap_or("?");
            let top = depth as f64 * ROW;
            let _ = write!(
                out,
                r#"<g class="frame"><title>{} — {} {} ({:.1}%), self {}</title><rect x="{left:.1}" y="{top:.1}" width="{width:.1}" height="{}" fill="{}" stroke="var(--bg, #fff)" stroke-width="0.5"/>"#,
                escape(name),
                short(value as f64),
                escape(unit),
                value as f64 / total as f64 * 100.0,
                short(self_value as f64),
                ROW - 1.0,
                warm(name)
            );
            let fits = ((width - 6.0) / 6.5) as usize;
            if fits >= 3 {
                let shown: String = if name.chars().count() > fits {
                    let mut s: String = name.chars().take(fits.saturating_sub(1)).collect();
                    s.push('…');
                    s
                } else {
                    name.to_owned()
                };
                let _ = write!(
                    out,
                    r#"<text x="{:.1}" y="{:.1}" style="fill:#1b1f24">{}</text>"#,
                    left + 3.0,
                    top + 13.0,
                    escape(&shown)
                );
            }
            out.push_str("</g>");
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    #[test]
    fn a_line_chart_draws_one_path_per_series_scaled_to_the_largest_value() {
        let series = vec![
            Series {
                name: r#"status="200""#.into(),
                points: vec![(0.0, 1.0), (60.0, 2.0), (120.0, 4.0)],
            },
            Series {
                name: r#"status="500""#.into(),
                points: vec![(0.0, 0.0), (60.0, f64::NAN), (120.0, 0.5)],
            },
        ];
        let svg = line_chart("rate", "requests <per second>", "req/s", &series);
        assert_eq!(count(&svg, r#"<path class="series""#), 2, "{svg}");
        assert!(
            svg.contains(r#"data-series="status=&quot;500&quot;" data-max="0.5""#),
            "{svg}"
        );
        assert!(svg.contains(r#"data-max="4""#));
        // The largest value touches the top of the plot, zero its floor.
        assert!(svg.contains("M48.0,162.0L338.0,112.0L628.0,12.0"), "{svg}");
        // A NaN breaks the line instead of drawing it to zero.
        assert!(svg.contains(r#"d="M48.0,212.0M628.0,187.0""#), "{svg}");
        assert!(svg.contains("requests &lt;per second&gt;"));
        assert!(svg.contains("role=\"img\"") && svg.contains("<desc"));
    }

    #[test]
    fn an_empty_chart_says_so() {
        let svg = line_chart("x", "nothing", "", &[]);
        assert!(svg.contains("no data in this window"));
        assert!(!svg.contains("<path"));
    }

    #[test]
    fn a_waterfall_places_each_span_in_time_and_marks_the_failure() {
        let bars = vec![
            Bar {
                depth: 0,
                label: "mythical-requester requester".into(),
                start: 1_000_000_000,
                end: 1_040_000_000,
                error: true,
                anchor: "span-a".into(),
            },
            Bar {
                depth: 1,
                label: "mythical-server INSERT <owlbear>".into(),
                start: 1_020_000_000,
                end: 1_040_000_000,
                error: true,
                anchor: "span-b".into(),
            },
        ];
        let svg = waterfall(&bars);
        assert_eq!(count(&svg, "<rect"), 2, "{svg}");
        assert_eq!(count(&svg, r#"class="span error""#), 2);
        assert!(svg.contains(r##"href="#span-b""##));
        assert!(svg.contains("INSERT &lt;owlbear&gt;"));
        // The child starts half-way through the root's bar.
        assert!(
            svg.contains(r#"<rect x="330.0""#) && svg.contains(r#"<rect x="580.0""#),
            "{svg}"
        );
        assert!(svg.contains("40.0ms"));
    }

    #[test]
    fn a_flame_graph_lays_children_under_their_parent() {
        let names = vec!["total".to_owned(), "main".into(), "hot_loop".into()];
        // total=100; main 100 (self 20); hot_loop 80 at offset 0.
        let levels = vec![vec![0, 100, 0, 0], vec![0, 100, 20, 1], vec![0, 80, 80, 2]];
        let svg = flame_graph(&names, &levels, "samples");
        assert_eq!(count(&svg, "<rect"), 3, "{svg}");
        assert!(
            svg.contains("hot_loop — 80 samples (80.0%), self 80"),
            "{svg}"
        );
        assert!(
            svg.contains(r#"<rect x="0.0" y="36.0" width="800.0""#),
            "{svg}"
        );
        assert!(flame_graph(&names, &[], "samples").contains("no samples"));
    }
}
