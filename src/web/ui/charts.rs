//! Small server-rendered SVG bar charts (stored size and duration over the
//! last runs): no script, no external request, readable without colour.

use std::fmt::Write as _;

/// One bar: its value (None: the run failed or has no value) and its label.
pub struct Bar {
    pub value: Option<f64>,
    pub label: String,
}

const WIDTH: f64 = 240.0;
const HEIGHT: f64 = 48.0;

/// An SVG bar chart of `bars` (oldest first), titled for screen readers.
/// Every text that goes in is escaped here.
pub fn bars(title: &str, bars: &[Bar]) -> String {
    let mut svg = String::new();
    let title = escape(title);
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{title}"><title>{title}</title>"#
    );
    let max = bars.iter().filter_map(|b| b.value).fold(0.0_f64, f64::max);
    if bars.is_empty() {
        svg.push_str(r#"<text x="4" y="28" class="chart-empty">no runs yet</text>"#);
    }
    let step = WIDTH / bars.len().max(1) as f64;
    let width = (step - 2.0).max(1.0);
    for (i, bar) in bars.iter().enumerate() {
        let x = i as f64 * step + 1.0;
        let label = escape(&bar.label);
        match bar.value {
            Some(v) => {
                let h = if max > 0.0 {
                    (v / max * (HEIGHT - 2.0)).max(1.0)
                } else {
                    1.0
                };
                let _ = write!(
                    svg,
                    r#"<rect class="bar" x="{x:.1}" y="{:.1}" width="{width:.1}" height="{h:.1}"><title>{label}</title></rect>"#,
                    HEIGHT - h
                );
            }
            None => {
                let _ = write!(
                    svg,
                    r#"<rect class="bar-missing" x="{x:.1}" y="{:.1}" width="{width:.1}" height="4"><title>{label}</title></rect>"#,
                    HEIGHT - 4.0
                );
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value_and_mark_missing_ones() {
        let svg = bars(
            "size <of> app",
            &[
                Bar {
                    value: Some(10.0),
                    label: "run 1".into(),
                },
                Bar {
                    value: None,
                    label: "run 2 failed".into(),
                },
                Bar {
                    value: Some(20.0),
                    label: "run 3".into(),
                },
            ],
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains(r#"aria-label="size &lt;of&gt; app""#));
        assert_eq!(svg.matches(r#"class="bar""#).count(), 2);
        assert_eq!(svg.matches(r#"class="bar-missing""#).count(), 1);
        // The largest bar fills the height (46 of 48), the other half of it.
        assert!(svg.contains(r#"height="46.0""#), "{svg}");
        assert!(svg.contains(r#"height="23.0""#), "{svg}");
    }

    #[test]
    fn no_runs_says_so() {
        assert!(bars("x", &[]).contains("no runs yet"));
    }
}
