//! The console's HTML: escaping, the page frame (navigation, style, the
//! little script), and the pieces every view repeats — a query shown so it
//! can be pasted into Grafana, with its Explore link when Grafana runs.

use std::fmt::Write;

/// Text made safe for HTML content and attribute values.
pub fn escape(text: &str) -> String {
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

/// A query string value, percent-encoded.
pub fn encode(text: &str) -> String {
    crate::grafana::encode(text)
}

/// Whether `word` is a trace id as the lab's logs and spans write it.
pub fn is_trace_id(word: &str) -> bool {
    word.len() == 32 && word.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Escaped text in which every trace id links to its trace.
pub fn link_trace_ids(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if is_trace_id(word) {
            let _ = write!(
                out,
                r#"<a href="/trace/{id}" class="trace-id">{id}</a>"#,
                id = word.to_ascii_lowercase()
            );
        } else {
            out.push_str(&escape(word));
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push_str(&escape(&c.to_string()));
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The pages, in the order the navigation shows them.
pub const NAV: &[(&str, &str)] = &[
    ("/", "Lab"),
    ("/scenarios", "Scenarios"),
    ("/guide", "Guide"),
    ("/traces", "Traces"),
    ("/logs", "Logs"),
    ("/metrics", "Metrics"),
    ("/profiles", "Profiles"),
    ("/diagnose", "Diagnose"),
];

const STYLE: &str = r#"
:root { color-scheme: light dark; --fg: #1b1f24; --bg: #ffffff; --muted: #57606a; --line: #d0d7de;
  --accent: #0a58ca; --bad: #b3261e; --good: #1a7f37; --panel: #f6f8fa; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9ba6b2;
  --line: #3d444d; --accent: #6cb6ff; --bad: #ff7b72; --good: #56d364; --panel: #161b22; } }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { background: var(--panel); border-bottom: 1px solid var(--line); padding: .5rem 1rem; }
header nav { display: flex; flex-wrap: wrap; gap: .25rem 1rem; align-items: center; }
header nav strong { margin-right: 1rem; }
header a { color: var(--fg); text-decoration: none; padding: .25rem 0; }
header a[aria-current=page] { border-bottom: 3px solid var(--accent); font-weight: 600; }
main { padding: 1rem; max-width: 72rem; margin: 0 auto; }
a { color: var(--accent); }
h1 { font-size: 1.6rem; margin: .5rem 0 1rem; }
h2 { font-size: 1.25rem; margin: 1.5rem 0 .5rem; }
table { border-collapse: collapse; width: 100%; }
.scroll { overflow-x: auto; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .9rem; }
pre { background: var(--panel); border: 1px solid var(--line); padding: .75rem; overflow-x: auto; white-space: pre; }
.query { background: var(--panel); border: 1px solid var(--line); padding: .5rem .75rem; margin: .5rem 0; }
.query code { white-space: pre-wrap; word-break: break-all; }
.bad { color: var(--bad); font-weight: 600; }
.good { color: var(--good); font-weight: 600; }
.muted { color: var(--muted); }
.error { border: 2px solid var(--bad); padding: .75rem 1rem; margin: 1rem 0; }
.note { border-left: 4px solid var(--accent); padding: .25rem .75rem; margin: 1rem 0; background: var(--panel); }
form.inline { display: inline; }
form.search { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; margin: .5rem 0 1rem; }
form.search label { display: flex; flex-direction: column; flex: 1 1 20rem; }
form.search label.small { flex: 0 1 7rem; }
input, select, textarea, button { font: inherit; color: inherit; }
input[type=text], input[type=number], textarea, select { padding: .4rem; border: 1px solid var(--muted);
  background: var(--bg); border-radius: 4px; }
button { padding: .4rem .9rem; border-radius: 4px; border: 1px solid var(--accent); background: var(--accent);
  color: #fff; cursor: pointer; min-height: 2.5rem; }
@media (prefers-color-scheme: dark) { button { color: #0d1117; } }
button.secondary { background: transparent; color: var(--accent); }
button:focus-visible, a:focus-visible, input:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 30rem), 1fr)); gap: 1rem; }
figure { margin: 0; border: 1px solid var(--line); padding: .5rem; }
figcaption { font-weight: 600; }
svg { max-width: 100%; height: auto; display: block; }
svg text { fill: var(--fg); font: 13px system-ui, sans-serif; }
.chart svg text { font-size: 15px; }
svg .axis { stroke: var(--muted); stroke-width: 1; }
svg .grid { stroke: var(--line); stroke-width: 1; }
.legend { list-style: none; padding: 0; margin: .25rem 0; display: flex; flex-wrap: wrap; gap: .25rem 1rem; font-size: .85rem; }
.swatch { display: inline-block; width: .8rem; height: .8rem; margin-right: .3rem; vertical-align: middle; }
details { margin: .25rem 0; }
summary { cursor: pointer; }
.steps { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: .5rem; }
.steps li { border: 1px solid var(--line); padding: .1rem .5rem; border-radius: 1rem; font-size: .85rem; }
.steps li.current { border-color: var(--accent); font-weight: 600; }
"#;

/// Disables a form's button while its request runs (a query can take a
/// second), and copies a query to the clipboard.
const SCRIPT: &str = r#"
document.addEventListener('submit', function (e) {
  var b = e.target.querySelector('button[type=submit]');
  if (b) { b.setAttribute('aria-busy', 'true'); b.textContent = 'Working…'; }
});
document.addEventListener('click', function (e) {
  var t = e.target.closest('button.copy');
  if (!t || !navigator.clipboard) return;
  navigator.clipboard.writeText(t.dataset.text).then(function () { t.textContent = 'Copied'; });
});
"#;

/// A whole page: `path` marks the current navigation entry.
pub fn page(path: &str, title: &str, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + STYLE.len() + 2048);
    let _ = write!(
        out,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Mythical Lab</title>
<style>{STYLE}</style></head>
<body><header><nav aria-label="Console"><strong>Mythical Lab</strong>"#,
        title = escape(title)
    );
    for (href, name) in NAV {
        let current = if *href == path {
            r#" aria-current="page""#
        } else {
            ""
        };
        let _ = write!(out, r#"<a href="{href}"{current}>{name}</a>"#);
    }
    let _ = write!(
        out,
        "</nav></header>\n<main>\n<h1>{}</h1>\n{body}\n</main><script>{SCRIPT}</script></body></html>\n",
        escape(title)
    );
    out
}

/// A query as the page ran it: its language, its text (to paste into
/// Grafana), a copy button, and Explore's link when Grafana runs.
pub fn query_box(language: &str, query: &str, explore: Option<&str>) -> String {
    let mut out = format!(
        r#"<div class="query"><span class="muted">{}</span> <code class="query-text">{}</code> <button type="button" class="copy secondary" data-text="{}">Copy</button>"#,
        escape(language),
        escape(query),
        escape(query)
    );
    if let Some(link) = explore {
        let _ = write!(
            out,
            r#" <a href="{}" rel="noopener">Open in Grafana Explore</a>"#,
            escape(link)
        );
    }
    out.push_str("</div>");
    out
}

/// An error the page could not get past, said plainly.
pub fn error_box(message: &str) -> String {
    format!(
        r#"<div class="error" role="alert"><strong>Error:</strong> {}</div>"#,
        escape(message)
    )
}

/// A note after an action (a scenario started, traffic changed).
pub fn note_box(message: &str) -> String {
    format!(
        r#"<div class="note" role="status">{}</div>"#,
        escape(message)
    )
}

/// A button that posts a form to `action` with hidden `fields`.
pub fn post_button(action: &str, fields: &[(&str, &str)], label: &str, class: &str) -> String {
    let mut out = format!(r#"<form class="inline" method="post" action="{action}">"#);
    for (name, value) in fields {
        let _ = write!(
            out,
            r#"<input type="hidden" name="{name}" value="{}">"#,
            escape(value)
        );
    }
    let _ = write!(
        out,
        r#"<button type="submit" class="{class}">{}</button></form>"#,
        escape(label)
    );
    out
}

/// A table with a header row; cells are HTML already.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::from(r#"<div class="scroll"><table><thead><tr>"#);
    for h in headers {
        let _ = write!(out, r#"<th scope="col">{}</th>"#, escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            escape(r#"<script>alert("x") & 'y'</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(escape("plain ✓ text"), "plain ✓ text");
    }

    #[test]
    fn trace_ids_link_and_the_rest_is_escaped() {
        let line = r#"traceID=705EFC3E25355E4EDEA900640369424A status=FAILURE error="<null>""#;
        let html = link_trace_ids(line);
        assert!(
            html.contains(r#"<a href="/trace/705efc3e25355e4edea900640369424a" class="trace-id">"#),
            "{html}"
        );
        assert!(html.contains("error=&quot;&lt;null&gt;&quot;"), "{html}");
        // 31 or 33 hex digits are not a trace id.
        assert!(!link_trace_ids("abcdef0123456789abcdef012345678").contains("<a"));
        assert!(!link_trace_ids("abcdef0123456789abcdef0123456789a").contains("<a"));
    }

    #[test]
    fn a_page_escapes_its_title_and_marks_where_it_is() {
        let html = page("/traces", "a <b> title", "<p>body</p>");
        assert!(html.contains("<title>a &lt;b&gt; title · Mythical Lab</title>"));
        assert!(html.contains(r#"<a href="/traces" aria-current="page">Traces</a>"#));
        assert!(html.contains(r#"<html lang="en">"#) && html.contains("name=\"viewport\""));
        let query = query_box(
            "LogQL",
            r#"{a="b"} |= "<x>""#,
            Some("http://g/explore?x=1&y=2"),
        );
        assert!(
            query.contains("{a=&quot;b&quot;} |= &quot;&lt;x&gt;&quot;"),
            "{query}"
        );
        assert!(query.contains("http://g/explore?x=1&amp;y=2"), "{query}");
    }
}
