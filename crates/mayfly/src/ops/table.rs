//! Plain-text tables that fit the terminal: wide columns (labels, jobs, reasons) are cut with
//! `…` first, and no row is ever longer than the width, so none wraps.

use std::io::IsTerminal;

const GAP: &str = "  ";
/// Without `COLUMNS` and without a terminal to ask.
const DEFAULT_WIDTH: usize = 100;

/// How wide the output may be: `COLUMNS`, else the terminal's width, else 100.
pub fn width() -> usize {
    if let Some(n) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        return n;
    }
    if std::io::stdout().is_terminal()
        && let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size()
    {
        return usize::from(w);
    }
    DEFAULT_WIDTH
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Col {
    /// What a row is called (an instance's name, to copy into `mayfly ssh`): cut last.
    Key,
    /// Kept whole as long as wide columns can give.
    Fixed,
    /// Numbers: kept whole, aligned right.
    Number,
    /// Cut first when the table is too wide.
    Wide,
}

pub struct Table {
    headers: Vec<(&'static str, Col)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[(&'static str, Col)]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row. Cells come from outside (job scopes, labels, names, reasons): their control
    /// characters are escaped, so none can break a line of the table.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows
            .push(cells.iter().map(|c| mayfly::escape::text(c)).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table, one line per row after the header, each at most `width` characters.
    pub fn render(&self, width: usize) -> String {
        let widths = self.widths(width);
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|(h, _)| h.to_string()).collect();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    line.push_str(GAP);
                }
                let text = cut(cell, widths[i]);
                let pad = widths[i].saturating_sub(chars(&text));
                if self.headers[i].1 == Col::Number {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(&text);
                } else {
                    line.push_str(&text);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(&cut(line.trim_end(), width));
            out.push('\n');
        }
        out
    }

    /// Each column's width: what its widest cell needs, then the wide columns shrunk (widest
    /// first) down to their header, then any column, until the table fits.
    fn widths(&self, width: usize) -> Vec<usize> {
        let mut widths: Vec<usize> = self
            .headers
            .iter()
            .enumerate()
            .map(|(i, (h, _))| {
                self.rows
                    .iter()
                    .map(|r| chars(&r[i]))
                    .max()
                    .unwrap_or(0)
                    .max(chars(h))
            })
            .collect();
        let total = |w: &[usize]| w.iter().sum::<usize>() + GAP.len() * w.len().saturating_sub(1);
        let kind = |i: usize| self.headers[i].1;
        let floors: [Box<dyn Fn(usize) -> Option<usize>>; 3] = [
            // Wide columns give way down to their header's width (at least 4).
            Box::new(|i| (kind(i) == Col::Wide).then(|| chars(self.headers[i].0).max(4))),
            // Then the others but keys and numbers, down to 4.
            Box::new(|i| matches!(kind(i), Col::Wide | Col::Fixed).then_some(4)),
            // Then keys; the cut of the whole line catches the rest.
            Box::new(|i| (kind(i) != Col::Number).then_some(4)),
        ];
        for floor in floors {
            while total(&widths) > width {
                let widest = (0..widths.len())
                    .filter_map(|i| floor(i).filter(|&f| widths[i] > f).map(|_| i))
                    .max_by_key(|&i| widths[i]);
                match widest {
                    Some(i) => widths[i] -= 1,
                    None => break,
                }
            }
        }
        widths
    }
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// `s` in at most `max` characters, the last one `…` when cut.
pub fn cut(s: &str, max: usize) -> String {
    if chars(s) <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let mut t = Table::new(&[
            ("NAME", Col::Key),
            ("STATE", Col::Fixed),
            ("AGE", Col::Number),
            ("LABELS", Col::Wide),
        ]);
        t.row(vec![
            "mayfly-linux-1".into(),
            "running".into(),
            "42s".into(),
            "self-hosted,linux,x64,gpu".into(),
        ]);
        t.row(vec![
            "m2".into(),
            "off".into(),
            "3h04m".into(),
            "self-hosted".into(),
        ]);
        t
    }

    #[test]
    fn a_table_that_fits_is_shown_whole_and_aligned() {
        assert_eq!(
            table().render(100),
            "NAME            STATE      AGE  LABELS\n\
             mayfly-linux-1  running    42s  self-hosted,linux,x64,gpu\n\
             m2              off      3h04m  self-hosted\n"
        );
    }

    #[test]
    fn wide_columns_are_cut_first_then_others_then_keys() {
        assert_eq!(
            table().render(45),
            "NAME            STATE      AGE  LABELS\n\
             mayfly-linux-1  running    42s  self-hosted,…\n\
             m2              off      3h04m  self-hosted\n"
        );
        let narrower = table().render(36);
        assert!(narrower.contains("mayfly-linux-1  runni…"), "{narrower}");
        let narrowest = table().render(28);
        assert!(narrowest.contains("mayfly-l…"), "keys last:\n{narrowest}");
        for width in [1, 5, 10, 20, 30, 40] {
            for line in table().render(width).lines() {
                assert!(line.chars().count() <= width, "{width}: {line:?}");
            }
        }
    }

    #[test]
    fn a_cell_from_outside_cannot_break_a_line() {
        let mut t = Table::new(&[("JOB", Col::Key), ("WHY", Col::Wide)]);
        t.row(vec![
            "github:acme/app\nforged row#1".into(),
            "no pool\u{1b}[2J".into(),
        ]);
        let out = t.render(200);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(out.contains("acme/app\\nforged"), "{out}");
        assert!(!out.contains('\u{1b}'), "{out}");
    }

    #[test]
    fn cut_marks_what_it_cut() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abc", 0), "");
    }
}
