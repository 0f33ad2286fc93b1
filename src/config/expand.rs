//! `${VAR}` and `${VAR:-default}` expansion of configuration text.
//!
//! Expansion runs on the raw text before YAML parsing, line by line, so an
//! error still names the line it is on, and values from the environment can
//! appear anywhere a string can. `$$` stands for a literal `$`.

/// An expansion failure on one line.
#[derive(Debug, thiserror::Error)]
pub enum ExpandError {
    /// `${VAR}` names a variable that is not set and has no default.
    #[error("line {line}: environment variable `{name}` is not set (write `${{{name}:-default}}` to give a default)")]
    Unset { line: usize, name: String },
    /// `${` without its closing brace.
    #[error("line {line}: unterminated `${{`")]
    Unterminated { line: usize },
    /// `${}` or a name with characters no variable has.
    #[error("line {line}: invalid variable name `{name}`")]
    BadName { line: usize, name: String },
}

/// Expands `text` with `lookup` (the process environment in production).
pub fn expand(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(text.len());
    for (idx, line) in text.split_inclusive('\n').enumerate() {
        let lineno = idx + 1;
        // Comments are left alone: an example in a comment must not need its variables set.
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        // A trailing comment (` # …` outside quotes) is left alone too.
        let (code, comment) = line.split_at(comment_start(line).unwrap_or(line.len()));
        let mut rest = code;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(stripped) = after.strip_prefix('$') {
                out.push('$');
                rest = stripped;
            } else if let Some(body) = after.strip_prefix('{') {
                let end = body.find('}').ok_or(ExpandError::Unterminated { line: lineno })?;
                let inner = &body[..end];
                let (name, default) = match inner.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (inner, None),
                };
                let valid = !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit());
                if !valid {
                    return Err(ExpandError::BadName {
                        line: lineno,
                        name: name.to_string(),
                    });
                }
                match (lookup(name).filter(|v| !v.is_empty()), default) {
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => {
                        return Err(ExpandError::Unset {
                            line: lineno,
                            name: name.to_string(),
                        });
                    }
                }
                rest = &body[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    Ok(out)
}

/// Where a YAML comment starts on a line: a `#` at the start or after
/// whitespace, outside single and double quotes.
fn comment_start(line: &str) -> Option<usize> {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single && prev != '\\' => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return Some(i),
            _ => {}
        }
        prev = c;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_comments_are_not_expanded() {
        let out = expand("a: ${SET} # needs ${UNSET}\nb: '# ${SET}'\nc: x#${SET}\n", |n| {
            (n == "SET").then(|| "v".to_string())
        })
        .unwrap();
        assert_eq!(out, "a: v # needs ${UNSET}\nb: '# v'\nc: x#v\n");
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("cache".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_and_defaults() {
        let t = "a: ${HOST}\nb: ${PORT:-6379}\nc: $${HOST}\nd: ${EMPTY:-x}\ne: cost $5\n";
        assert_eq!(expand(t, env).unwrap(), "a: cache\nb: 6379\nc: ${HOST}\nd: x\ne: cost $5\n");
    }

    #[test]
    fn unset_names_line() {
        let err = expand("a: 1\nb: ${NOPE}\n", env).unwrap_err();
        assert!(err.to_string().starts_with("line 2:"), "{err}");
    }

    #[test]
    fn comments_untouched() {
        assert_eq!(expand("# ${NOPE}\n", env).unwrap(), "# ${NOPE}\n");
        assert!(matches!(expand("x: ${A", env), Err(ExpandError::Unterminated { line: 1 })));
        assert!(matches!(expand("x: ${1A}", env), Err(ExpandError::BadName { .. })));
    }
}
