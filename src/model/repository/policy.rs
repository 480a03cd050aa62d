//! Triton's `version_policy` from a model's `config.pbtxt`: which of the version folders are
//! served. Only that field is read, by hand: the rest of the file is Triton's business.

/// Which versions of a model are served, as Triton's `version_policy` says.
///
/// # Example
/// ```
/// use tinyserve::model::VersionPolicy;
/// let policy = VersionPolicy::from_config("version_policy: { latest: { num_versions: 2 } }")?;
/// assert_eq!(policy, VersionPolicy::Latest(2));
/// assert_eq!(policy.select(&[1, 2, 3]), vec![2, 3]);
/// # Ok::<(), tinyserve::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionPolicy {
    /// Every version folder (also what a model without `config.pbtxt` gets, unlike Triton,
    /// whose default is `latest 1`).
    All,
    /// The N highest versions.
    Latest(usize),
    /// These versions, where their folders exist.
    Specific(Vec<u64>),
}

impl VersionPolicy {
    /// The policy a `config.pbtxt` text sets: `All` when it sets none. A `version_policy`
    /// that is not `all`, `latest` with `num_versions` or `specific` with `versions` is an
    /// error that says what was expected.
    pub fn from_config(text: &str) -> crate::Result<VersionPolicy> {
        let text = strip_comments(text);
        let Some(at) = text.find("version_policy") else {
            return Ok(VersionPolicy::All);
        };
        let bad = |why: &str| {
            crate::Error::bad_request(format!(
                "config.pbtxt: version_policy: {why} (expected `{{ all: {{}} }}`, \
                 `{{ latest: {{ num_versions: N }} }}` or `{{ specific: {{ versions: [1, 2] }} }}`)"
            ))
        };
        let body = block(&text[at + "version_policy".len()..]).ok_or_else(|| bad("no { ... }"))?;
        let kind = body
            .trim_start()
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap_or_default();
        let inner = block(&body[body.find(kind).unwrap_or(0) + kind.len()..]).unwrap_or("");
        match kind {
            "all" => Ok(VersionPolicy::All),
            "latest" => {
                let n = numbers_after(inner, "num_versions")
                    .into_iter()
                    .next()
                    .ok_or_else(|| bad("latest without num_versions"))?;
                match usize::try_from(n) {
                    Ok(n) if n > 0 => Ok(VersionPolicy::Latest(n)),
                    _ => Err(bad("num_versions must be at least 1")),
                }
            }
            "specific" => {
                let versions = numbers_after(inner, "versions");
                match versions.is_empty() {
                    true => Err(bad("specific without versions")),
                    false => Ok(VersionPolicy::Specific(versions)),
                }
            }
            other => Err(bad(&format!("unknown policy {other:?}"))),
        }
    }

    /// The versions of `available` this policy serves, in increasing order.
    pub fn select(&self, available: &[u64]) -> Vec<u64> {
        let mut sorted = available.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        match self {
            VersionPolicy::All => sorted,
            VersionPolicy::Latest(n) => sorted.split_off(sorted.len().saturating_sub(*n)),
            VersionPolicy::Specific(wanted) => {
                sorted.retain(|v| wanted.contains(v));
                sorted
            }
        }
    }
}

/// The text without `#` comments.
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// What lies between the first `{` of `text` (after an optional `:`) and its matching `}`.
fn block(text: &str) -> Option<&str> {
    let rest = text
        .trim_start()
        .strip_prefix(':')
        .unwrap_or(text)
        .trim_start();
    let rest = rest.strip_prefix('{')?;
    let mut depth = 1usize;
    for (i, c) in rest.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&rest[..i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// Every number given to `field` in `text`: `field: 3`, repeated, or `field: [1, 3]`.
fn numbers_after(text: &str, field: &str) -> Vec<u64> {
    let mut numbers = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(field) {
        rest = rest[at + field.len()..].trim_start();
        let Some(value) = rest.strip_prefix(':') else {
            continue;
        };
        let value = value.trim_start();
        let list = match value.strip_prefix('[') {
            Some(list) => list.split(']').next().unwrap_or_default(),
            None => value
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap_or_default(),
        };
        numbers.extend(list.split(',').filter_map(|n| n.trim().parse::<u64>().ok()));
    }
    numbers
}

#[cfg(test)]
mod tests {
    use super::VersionPolicy;

    #[test]
    fn no_policy_serves_every_version() {
        let policy = VersionPolicy::from_config("name: \"m\"\nplatform: \"onnxruntime_onnx\"\n");
        assert_eq!(policy.ok(), Some(VersionPolicy::All));
        assert_eq!(VersionPolicy::All.select(&[3, 1, 2]), vec![1, 2, 3]);
    }

    #[test]
    fn the_three_policies_parse_in_triton_spellings() {
        let cases = [
            ("version_policy: { all { }}", VersionPolicy::All),
            (
                "version_policy { latest { num_versions: 1 } }",
                VersionPolicy::Latest(1),
            ),
            (
                "version_policy: { specific: { versions: [1, 3] }}",
                VersionPolicy::Specific(vec![1, 3]),
            ),
            (
                "version_policy: { specific { versions: 2 versions: 4 } } # two",
                VersionPolicy::Specific(vec![2, 4]),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                VersionPolicy::from_config(text).ok(),
                Some(expected),
                "{text}"
            );
        }
    }

    #[test]
    fn selection_follows_the_policy() {
        assert_eq!(VersionPolicy::Latest(2).select(&[1, 5, 3]), vec![3, 5]);
        assert_eq!(VersionPolicy::Latest(9).select(&[1]), vec![1]);
        assert_eq!(VersionPolicy::Specific(vec![1, 7]).select(&[1, 2]), vec![1]);
    }

    #[test]
    fn a_bad_policy_says_what_was_expected() {
        for text in [
            "version_policy: { newest: {} }",
            "version_policy: { latest: { num_versions: 0 } }",
            "version_policy: { specific: { } }",
            "version_policy: latest",
        ] {
            let err = VersionPolicy::from_config(text).expect_err(text);
            assert!(err.message().contains("expected"), "{}", err.message());
        }
    }
}
