//! A benchmark's section of BENCHMARKS.md: what one run measured, as
//! Markdown. Each bench builds its `Section` as it measures; every line is
//! printed as it is added and, when `BENCH_RESULTS` names a folder, the
//! whole section is written to `<folder>/<name>.md`, which `scripts/bench`
//! splices between the section's markers (`splice`). Everything in a
//! section is that run's: the day, the settings it read, its tables and
//! the goal lines judged from its own figures.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The folder a section is written to, when set.
pub const RESULTS_VARIABLE: &str = "BENCH_RESULTS";

/// One run's section, kept as blocks (paragraphs, tables, lists) that
/// Markdown separates by one blank line.
pub struct Section {
    name: String,
    day: String,
    settings: Vec<String>,
    blocks: Vec<Block>,
}

enum Block {
    Text(String),
    Table { columns: usize, lines: Vec<String> },
}

impl Section {
    /// A section named as its markers are (`<!-- bench:<name> -->`).
    pub fn new(name: &str) -> Section {
        assert!(
            valid_name(name),
            "a section name is lowercase letters, digits and `_`: {name:?}"
        );
        Section {
            name: name.to_owned(),
            day: today(),
            settings: Vec::new(),
            blocks: Vec::new(),
        }
    }

    /// Reads a setting from the environment (its default when unset) and
    /// records it, so the section says what the run used. A value that
    /// does not parse stops the bench: a silent default would publish
    /// figures for settings nobody asked for.
    pub fn setting<T>(&mut self, variable: &str, default: T) -> T
    where
        T: FromStr + Display,
    {
        let value = match std::env::var(variable) {
            Ok(text) => text.parse().unwrap_or_else(|_| {
                panic!("{variable}={text:?} is not a valid value (the default is {default})")
            }),
            Err(_) => default,
        };
        self.settings.push(format!("`{variable}={value}`"));
        value
    }

    /// A paragraph (or one list item per line, for lines starting `- `).
    pub fn paragraph(&mut self, text: impl AsRef<str>) {
        self.open();
        let text = text.as_ref().trim_end().to_owned();
        self.begin_block();
        println!("{text}");
        self.blocks.push(Block::Text(text));
    }

    /// Starts a table with these column headings; `row` fills it.
    pub fn table(&mut self, columns: &[&str]) {
        self.open();
        self.begin_block();
        let lines = vec![
            format!("| {} |", columns.join(" | ")),
            format!("|{}", "---|".repeat(columns.len())),
        ];
        for line in &lines {
            println!("{line}");
        }
        self.blocks.push(Block::Table {
            columns: columns.len(),
            lines,
        });
    }

    /// One row of the table started last; a `|` inside a cell is escaped,
    /// so queries such as `|= "needle"` stay in their cell.
    pub fn row<S: Display>(&mut self, cells: impl IntoIterator<Item = S>) {
        let cells: Vec<String> = cells
            .into_iter()
            .map(|c| c.to_string().replace('|', "\\|"))
            .collect();
        let Some(Block::Table { columns, lines }) = self.blocks.last_mut() else {
            panic!("a row with no table before it: {cells:?}");
        };
        assert_eq!(
            cells.len(),
            *columns,
            "a row of {} cells in a table of {columns} columns: {cells:?}",
            cells.len()
        );
        let line = format!("| {} |", cells.join(" | "));
        println!("{line}");
        lines.push(line);
    }

    /// "Against the goals:" and one line per goal, each judged from the
    /// figure it shows.
    pub fn goals(&mut self, goals: &[Goal]) {
        self.paragraph("Against the goals:");
        let list: Vec<String> = goals.iter().map(Goal::line).collect();
        self.paragraph(list.join("\n"));
    }

    /// The section as it is written: blocks separated by a blank line,
    /// one newline at the end.
    pub fn markdown(&self) -> String {
        let mut text = self.opening();
        for block in &self.blocks {
            text.push_str("\n\n");
            match block {
                Block::Text(t) => text.push_str(t),
                Block::Table { lines, .. } => text.push_str(&lines.join("\n")),
            }
        }
        text.push('\n');
        text
    }

    /// Writes the section to `$BENCH_RESULTS/<name>.md` when that is set
    /// (through a temporary file, so a half-written section is never
    /// spliced); the path written, if any.
    pub fn finish(self) -> Option<PathBuf> {
        let folder = std::env::var_os(RESULTS_VARIABLE)?;
        let path = self
            .write_to(Path::new(&folder))
            .unwrap_or_else(|e| panic!("writing the {} section to {folder:?}: {e}", self.name));
        eprintln!("section {} written to {}", self.name, path.display());
        Some(path)
    }

    fn write_to(&self, folder: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(folder)?;
        let path = folder.join(format!("{}.md", self.name));
        let partial = folder.join(format!(".{}.md.partial", self.name));
        std::fs::write(&partial, self.markdown())?;
        std::fs::rename(&partial, &path)?;
        Ok(path)
    }

    /// The first paragraph of every section: the day, the machine's cores
    /// and the settings the run read.
    fn opening(&self) -> String {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let mut text = format!("Measured {} on {cores} cores", self.day);
        if !self.settings.is_empty() {
            text.push_str(" with ");
            text.push_str(&self.settings.join(", "));
        }
        text.push('.');
        text
    }

    /// The opening is printed before the first block, once the settings
    /// are all read.
    fn open(&mut self) {
        if self.blocks.is_empty() {
            println!("{}", self.opening());
        }
    }

    fn begin_block(&self) {
        println!();
    }
}

/// A goal and whether this run met it, with the figure it was judged on.
pub struct Goal {
    what: String,
    met: bool,
    figure: String,
}

impl Goal {
    pub fn new(what: impl Into<String>, met: bool, figure: impl Into<String>) -> Goal {
        Goal {
            what: what.into(),
            met,
            figure: figure.into(),
        }
    }

    fn line(&self) -> String {
        let verdict = if self.met { "met" } else { "**not met**" };
        format!("- {}: {verdict} ({})", self.what, self.figure)
    }
}

/// A count as people write it in prose: 2000000 as "2,000,000".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Today's date (UTC) as `YYYY-MM-DD`, from the system clock.
pub fn today() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    let (year, month, day) = civil_date(seconds / 86_400);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Why a section could not be spliced into the document.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpliceError {
    #[error("{0:?} is not a section name (lowercase letters, digits and `_`)")]
    BadName(String),
    #[error("no `{0}` line in the document: add the section's markers first")]
    MissingMarker(String),
    #[error("`{0}` appears more than once in the document")]
    DuplicateMarker(String),
    #[error("`{end}` comes before `{start}`")]
    OutOfOrder { start: String, end: String },
}

/// The markers that enclose section `name`, each alone on its line.
fn markers(name: &str) -> (String, String) {
    (
        format!("<!-- bench:{name} -->"),
        format!("<!-- /bench:{name} -->"),
    )
}

/// `document` with what stands between section `name`'s markers replaced
/// by `body`, a blank line either side; everything outside the markers,
/// the markers included, is left as it was.
pub fn splice(document: &str, name: &str, body: &str) -> Result<String, SpliceError> {
    if !valid_name(name) {
        return Err(SpliceError::BadName(name.to_owned()));
    }
    let (start, end) = markers(name);
    let line_of = |marker: &str| -> Result<usize, SpliceError> {
        let mut found = document
            .split_inclusive('\n')
            .enumerate()
            .filter(|(_, line)| line.trim() == marker)
            .map(|(i, _)| i);
        let first = found
            .next()
            .ok_or_else(|| SpliceError::MissingMarker(marker.to_owned()))?;
        if found.next().is_some() {
            return Err(SpliceError::DuplicateMarker(marker.to_owned()));
        }
        Ok(first)
    };
    let (first, last) = (line_of(&start)?, line_of(&end)?);
    if last < first {
        return Err(SpliceError::OutOfOrder { start, end });
    }
    let lines: Vec<&str> = document.split_inclusive('\n').collect();
    let mut spliced: String = lines[..=first].concat();
    if !spliced.ends_with('\n') {
        spliced.push('\n');
    }
    spliced.push('\n');
    let body = body.trim_matches('\n');
    if !body.is_empty() {
        spliced.push_str(body);
        spliced.push_str("\n\n");
    }
    spliced.push_str(&lines[last..].concat());
    Ok(spliced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1500), "1,500");
        assert_eq!(thousands(2_000_000), "2,000,000");
    }

    #[test]
    fn dates_from_days_since_the_epoch() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(59), (1970, 3, 1));
        // 2000 is a leap year, 2100 is not.
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(20_697), (2026, 9, 1));
        assert_eq!(civil_date(47_541), (2100, 3, 1));
    }

    #[test]
    fn a_section_opens_with_its_day_and_settings() {
        let mut section = Section::new("stack");
        section.settings.push("`BENCH_MINUTES=3`".into());
        section.day = "2026-12-01".into();
        section.table(&["what", "result"]);
        section.row(["`lab up`", "1.75 s"]);
        section.row(["LogQL `{a=\"b\"} |= \"x\"`", "77 ms"]);
        section.goals(&[
            Goal::new("up ≤ 3 s", true, "1.75 s"),
            Goal::new("total ≤ 150 MB", false, "597.4 MB"),
        ]);
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(
            section.markdown(),
            format!(
                "Measured 2026-12-01 on {cores} cores with `BENCH_MINUTES=3`.\n\
                 \n\
                 | what | result |\n\
                 |---|---|\n\
                 | `lab up` | 1.75 s |\n\
                 | LogQL `{{a=\"b\"}} \\|= \"x\"` | 77 ms |\n\
                 \n\
                 Against the goals:\n\
                 \n\
                 - up ≤ 3 s: met (1.75 s)\n\
                 - total ≤ 150 MB: **not met** (597.4 MB)\n"
            )
        );
    }

    #[test]
    #[should_panic(expected = "a row of 1 cells in a table of 2 columns")]
    fn a_row_must_fill_its_table() {
        let mut section = Section::new("heap");
        section.table(&["block", "system"]);
        section.row(["64 B"]);
    }

    #[test]
    fn a_section_is_written_whole_under_its_name() {
        let folder = tempfile::tempdir().unwrap();
        let mut section = Section::new("heap");
        section.paragraph("one line");
        let path = section.write_to(folder.path()).unwrap();
        assert_eq!(path, folder.path().join("heap.md"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("Measured "), "{text}");
        assert!(text.ends_with("\n\none line\n"), "{text}");
        let names: Vec<_> = std::fs::read_dir(folder.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["heap.md"]);
    }

    const DOCUMENT: &str = "# Benchmarks\n\
        \n\
        ## Heap\n\
        \n\
        Prose before.\n\
        \n\
        <!-- bench:heap -->\n\
        \n\
        old figures\n\
        \n\
        <!-- /bench:heap -->\n\
        \n\
        Prose after.\n\
        <!-- bench:stack -->\n\
        <!-- /bench:stack -->\n";

    #[test]
    fn splicing_replaces_only_what_is_between_the_markers() {
        let spliced = splice(DOCUMENT, "heap", "new figures\n\n| a |\n|---|\n").unwrap();
        assert_eq!(
            spliced,
            DOCUMENT.replace("old figures\n", "new figures\n\n| a |\n|---|\n")
        );
        let stack = splice(&spliced, "stack", "\nup 1.75 s\n").unwrap();
        assert!(
            stack.ends_with(
                "Prose after.\n<!-- bench:stack -->\n\nup 1.75 s\n\n<!-- /bench:stack -->\n"
            ),
            "{stack}"
        );
        assert!(stack.contains("new figures"));
    }

    #[test]
    fn splicing_twice_changes_nothing_more() {
        let once = splice(DOCUMENT, "heap", "new figures\n").unwrap();
        assert_eq!(splice(&once, "heap", "new figures\n").unwrap(), once);
        let empty = splice(DOCUMENT, "stack", "").unwrap();
        assert_eq!(splice(&empty, "stack", "").unwrap(), empty);
    }

    #[test]
    fn splicing_refuses_a_document_whose_markers_are_wrong() {
        assert_eq!(
            splice(DOCUMENT, "docker", "x"),
            Err(SpliceError::MissingMarker("<!-- bench:docker -->".into()))
        );
        let twice = format!("{DOCUMENT}<!-- bench:heap -->\n");
        assert_eq!(
            splice(&twice, "heap", "x"),
            Err(SpliceError::DuplicateMarker("<!-- bench:heap -->".into()))
        );
        let reversed = "<!-- /bench:heap -->\n<!-- bench:heap -->\n";
        assert!(matches!(
            splice(reversed, "heap", "x"),
            Err(SpliceError::OutOfOrder { .. })
        ));
        assert_eq!(
            splice(DOCUMENT, "../heap", "x"),
            Err(SpliceError::BadName("../heap".into()))
        );
    }
}
