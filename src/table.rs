//! Plain-text tables for a terminal.
//!
//! `lookout check`, `lookout report` and `lookout relay dlq list` all print
//! their text form through [`render`], so every table lines up the same way:
//! columns padded to their widest cell and two spaces apart, the last column
//! left free (it holds long reasons and errors), no trailing blanks.

/// Renders a header line and one line per row, each ending in a newline.
///
/// Widths count characters, not bytes, so `—` and `…` line up. The last
/// column is not padded: a long error there does not widen every line.
pub fn render(head: &[&str], rows: &[Vec<String>]) -> String {
    let padded = head.len().saturating_sub(1);
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r).take(padded) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[&str], out: &mut String| {
        let start = out.len();
        for (i, c) in cells.iter().enumerate() {
            out.push_str(c);
            if i + 1 < cells.len() {
                let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(c.chars().count());
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        let kept = out[start..].trim_end().len();
        out.truncate(start + kept);
        out.push('\n');
    };
    let mut out = String::new();
    line(head, &mut out);
    for r in rows {
        line(&r.iter().map(String::as_str).collect::<Vec<_>>(), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn columns_line_up_and_the_last_is_free() {
        let rows = vec![
            vec!["cache".to_string(), "ok".to_string(), "a long reason".to_string()],
            vec!["web—1".to_string(), "FAIL".to_string(), String::new()],
        ];
        assert_eq!(
            render(&["PROBE", "OK", "ERROR"], &rows),
            "PROBE  OK    ERROR\ncache  ok    a long reason\nweb—1  FAIL\n"
        );
    }

    #[test]
    fn no_rows_is_the_header_alone() {
        assert_eq!(render(&["ID", "REASON"], &[]), "ID  REASON\n");
        assert_eq!(render(&[], &[]), "\n");
    }
}
