//! [`Headers`]: the header fields of a request or a response.

/// An ordered list of header fields (name, value), looked up by name without regard to case.
///
/// Order and repeated names are kept as received or added: `Set-Cookie` or `Vary` may appear
/// several times. [`Headers::set`] replaces every field of a name, [`Headers::append`] adds one
/// more.
///
/// # Example
/// ```
/// use tinyserve::Headers;
/// let mut headers = Headers::new();
/// headers.set("Content-Type", "application/json");
/// headers.append("Vary", "Origin");
/// headers.append("vary", "Accept");
/// assert_eq!(headers.get("content-type"), Some("application/json"));
/// assert_eq!(headers.get_all("Vary").collect::<Vec<_>>(), ["Origin", "Accept"]);
/// headers.set("Vary", "*");
/// assert_eq!(headers.get_all("Vary").collect::<Vec<_>>(), ["*"]);
/// assert_eq!(headers.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<(String, String)>,
}

impl Headers {
    /// No header fields.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// The value of the first field called `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The values of every field called `name` (case-insensitive), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Whether a field called `name` is present (case-insensitive).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name` to `value`, replacing every field of that name; a new name goes last.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        self.remove(&name);
        self.fields.push((name, value.into()));
    }

    /// Adds one more field `name: value`, keeping those already there.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.fields.push((name.into(), value.into()));
    }

    /// Removes every field called `name` (case-insensitive).
    pub fn remove(&mut self, name: &str) {
        self.fields
            .retain(|(key, _)| !key.eq_ignore_ascii_case(name));
    }

    /// Every field, (name, value), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of fields (a repeated name counts each time).
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there is no field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Headers {
        let mut headers = Headers::new();
        headers.extend(iter);
        headers
    }
}

impl<K: Into<String>, V: Into<String>> Extend<(K, V)> for Headers {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (name, value) in iter {
            self.append(name, value);
        }
    }
}

impl IntoIterator for Headers {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.fields.into_iter()
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a str, &'a str);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, String)>,
        fn(&'a (String, String)) -> (&'a str, &'a str),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Defines the pair of by-value header modifiers every type that carries headers has, with one
/// meaning everywhere: `with_header` replaces, `with_appended_header` appends. `$what` names
/// whose headers they are in the docs; `|s| expr` reaches the [`Headers`] from `s: &mut Self`.
macro_rules! header_modifiers {
    ($ty:ident, $what:literal, |$s:ident| $headers:expr) => {
        impl $ty {
            #[doc = concat!("Sets the header `name` to `value` on ", $what,
                            ", replacing any header of that name.")]
            pub fn with_header(
                mut self,
                name: impl Into<String>,
                value: impl Into<String>,
            ) -> $ty {
                let $s = &mut self;
                $headers.set(name, value);
                self
            }

            #[doc = concat!("Adds the header `name: value` to ", $what,
                            ", keeping any header of that name already there (`Set-Cookie`, \
                             `Vary`...).")]
            pub fn with_appended_header(
                mut self,
                name: impl Into<String>,
                value: impl Into<String>,
            ) -> $ty {
                let $s = &mut self;
                $headers.append(name, value);
                self
            }
        }
    };
}
pub(crate) use header_modifiers;

#[cfg(test)]
mod tests {
    use super::Headers;

    #[test]
    fn set_replaces_every_field_of_a_name_and_append_keeps_them() {
        let mut headers: Headers = [("A", "1"), ("b", "2"), ("a", "3")].into_iter().collect();
        assert_eq!(headers.get("a"), Some("1"));
        assert_eq!(headers.get_all("A").collect::<Vec<_>>(), ["1", "3"]);
        headers.set("A", "4");
        assert_eq!(headers.iter().collect::<Vec<_>>(), [("b", "2"), ("A", "4")]);
        headers.append("B", "5");
        assert_eq!(headers.get_all("b").count(), 2);
        headers.remove("B");
        assert!(!headers.contains("b"));
        assert_eq!(headers.len(), 1);
        let owned: Vec<(String, String)> = headers.into_iter().collect();
        assert_eq!(owned, [("A".to_string(), "4".to_string())]);
    }
}
