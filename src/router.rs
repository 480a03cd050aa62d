//! Path patterns (`/models/<name>/predict`, `/static/<path..>`) and the choice between 404
//! and 405.

use std::sync::Arc;

use crate::request::percent_decode_path;
use crate::{Request, Response};

/// A handler as the router stores it.
pub(crate) type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    /// `<name..>`, last in a pattern: one or more segments, the rest of the path.
    Rest(String),
}

/// A route pattern: literal segments and `<param>` segments.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    text: String,
    segments: Vec<Segment>,
}

impl Pattern {
    /// Parses `/a/<b>/c`. A segment written `<name>` (or `{name}`) captures one path segment;
    /// the last one written `<name..>` captures the rest of the path, one segment or more.
    pub(crate) fn parse(text: &str) -> Pattern {
        let segments = split(text)
            .map(|segment| match param_name(segment) {
                Some(name) => match name.strip_suffix("..") {
                    Some(name) => Segment::Rest(name.to_string()),
                    None => Segment::Param(name.to_string()),
                },
                None => Segment::Literal(segment.to_string()),
            })
            .collect();
        Pattern {
            text: text.to_string(),
            segments,
        }
    }

    /// The captured parameters when `path` matches.
    fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let mut params = Vec::new();
        let mut parts = split(path);
        for segment in &self.segments {
            let part = parts.next()?;
            match segment {
                Segment::Literal(literal) if literal == part => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => params.push((name.clone(), percent_decode_path(part))),
                Segment::Rest(name) => {
                    // Each segment decoded on its own: one that decodes to a `/` (`%2F`) would
                    // be read as two, so the pattern does not match it.
                    let mut rest = Vec::new();
                    for part in std::iter::once(part).chain(parts.by_ref()) {
                        let decoded = percent_decode_path(part);
                        if decoded.contains('/') {
                            return None;
                        }
                        rest.push(decoded);
                    }
                    params.push((name.clone(), rest.join("/")));
                }
            }
        }
        parts.next().is_none().then_some(params)
    }

    /// Literal segments rank before parameters, so `/models/list` wins over `/models/<name>`.
    /// A pattern without a `<rest..>` segment ranks before one with it.
    fn specificity(&self) -> usize {
        let literals = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        let fixed = !self.segments.iter().any(|s| matches!(s, Segment::Rest(_)));
        literals * 2 + usize::from(fixed)
    }

    /// The parameter that names a model: the one right after a `models` segment
    /// (`/models/<name>/predict`, `/v2/models/<name>/infer`). The app records its value on the
    /// response ([`crate::Response::with_model`]) for the access log.
    pub(crate) fn model_param(&self) -> Option<&str> {
        self.segments.windows(2).find_map(|pair| match pair {
            [Segment::Literal(models), Segment::Param(name)] if models == "models" => {
                Some(name.as_str())
            }
            _ => None,
        })
    }

    /// The pattern as written, used as the route template in logs and metrics.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }
}

/// The parameter a pattern segment captures: `name` for `<name>` (or `{name}`).
pub(crate) fn param_name(segment: &str) -> Option<&str> {
    segment
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .or_else(|| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

pub(crate) struct Route {
    pub(crate) method: String,
    pub(crate) pattern: Pattern,
    pub(crate) handler: Handler,
    /// The group the route was mounted with ([`crate::Group`]), as an index into the app's.
    pub(crate) group: Option<usize>,
}

/// What the router found for a request.
pub(crate) enum Match<'a> {
    Found {
        route: &'a Route,
        params: Vec<(String, String)>,
    },
    /// The path matched, not the method: the allowed methods, and the group of the first
    /// route whose path matched.
    MethodNotAllowed {
        allowed: Vec<String>,
        group: Option<usize>,
    },
    NotFound,
}

#[derive(Default)]
pub(crate) struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub(crate) fn add(
        &mut self,
        method: &str,
        pattern: &str,
        handler: Handler,
        group: Option<usize>,
    ) {
        self.routes.push(Route {
            method: method.to_ascii_uppercase(),
            pattern: Pattern::parse(pattern),
            handler,
            group,
        });
    }

    /// Finds the most specific route for `path`; `HEAD` falls back to `GET`.
    pub(crate) fn find(&self, method: &str, path: &str) -> Match<'_> {
        let mut best: Option<(&Route, Vec<(String, String)>)> = None;
        let mut allowed: Vec<String> = Vec::new();
        let mut group = None;
        for route in &self.routes {
            let Some(params) = route.pattern.matches(path) else {
                continue;
            };
            if allowed.is_empty() {
                group = route.group;
            }
            if !allowed.contains(&route.method) {
                allowed.push(route.method.clone());
            }
            let method_fits = route.method == method || (method == "HEAD" && route.method == "GET");
            let better = match &best {
                Some((current, _)) => {
                    route.pattern.specificity() > current.pattern.specificity()
                        || (route.method == method && current.method != method)
                }
                None => true,
            };
            if method_fits && better {
                best = Some((route, params));
            }
        }
        match best {
            Some((route, params)) => Match::Found { route, params },
            None if allowed.is_empty() => Match::NotFound,
            None => {
                if allowed.iter().any(|m| m == "GET") && !allowed.iter().any(|m| m == "HEAD") {
                    allowed.push("HEAD".to_string());
                }
                Match::MethodNotAllowed { allowed, group }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameter_after_models_names_a_model() {
        let param = |text| Pattern::parse(text).model_param().map(str::to_string);
        assert_eq!(param("/models/<name>/predict").as_deref(), Some("name"));
        assert_eq!(param("/v2/models/<model>/infer").as_deref(), Some("model"));
        assert_eq!(param("/models"), None);
        assert_eq!(param("/hello/<name>"), None);
        assert_eq!(param("/static/<path..>"), None);
    }

    fn router(routes: &[(&str, &str)]) -> Router {
        let mut router = Router::default();
        for (method, pattern) in routes {
            let name = format!("{method} {pattern}");
            router.add(
                method,
                pattern,
                Arc::new(move |_| Response::text(name.clone())),
                None,
            );
        }
        router
    }

    fn found(router: &Router, method: &str, path: &str) -> Option<(String, Vec<(String, String)>)> {
        match router.find(method, path) {
            Match::Found { route, params } => Some((
                format!("{} {}", route.method, route.pattern.as_str()),
                params,
            )),
            _ => None,
        }
    }

    #[test]
    fn params_are_captured_and_decoded() {
        let r = router(&[("POST", "/models/<name>/predict")]);
        let (route, params) = found(&r, "POST", "/models/my%20model/predict").unwrap_or_default();
        assert_eq!(route, "POST /models/<name>/predict");
        assert_eq!(params, vec![("name".to_string(), "my model".to_string())]);
        assert!(found(&r, "POST", "/models/x/predict/more").is_none());
        assert!(found(&r, "POST", "/models//predict").is_none());
    }

    #[test]
    fn literal_segments_beat_parameters() {
        let r = router(&[("GET", "/v2/models/<name>"), ("GET", "/v2/models/stats")]);
        let (route, _) = found(&r, "GET", "/v2/models/stats").unwrap_or_default();
        assert_eq!(route, "GET /v2/models/stats");
    }

    #[test]
    fn wrong_method_lists_the_allowed_ones() {
        let r = router(&[("GET", "/a"), ("POST", "/a")]);
        match r.find("DELETE", "/a") {
            Match::MethodNotAllowed { allowed, .. } => {
                assert_eq!(allowed, ["GET", "POST", "HEAD"])
            }
            _ => panic!("expected 405"),
        }
        assert!(matches!(r.find("GET", "/b"), Match::NotFound));
        assert!(found(&r, "HEAD", "/a").is_some());
    }

    #[test]
    fn a_rest_segment_takes_the_remaining_segments_decoded_one_by_one() {
        let r = router(&[("GET", "/static/<path..>"), ("GET", "/static/app.js")]);
        let (route, params) = found(&r, "GET", "/static/css/a%20b/site.css").unwrap_or_default();
        assert_eq!(route, "GET /static/<path..>");
        assert_eq!(
            params,
            [("path".to_string(), "css/a b/site.css".to_string())]
        );
        let (route, _) = found(&r, "GET", "/static/app.js").unwrap_or_default();
        assert_eq!(route, "GET /static/app.js", "a fixed pattern wins");
        assert!(
            found(&r, "GET", "/static").is_none(),
            "one segment at least"
        );
        assert!(found(&r, "GET", "/static/").is_none());
        assert!(
            found(&r, "GET", "/static/a%2Fb").is_none(),
            "an encoded slash is not a separator"
        );
        let (_, params) = found(&r, "GET", "/static/%2e%2e/x").unwrap_or_default();
        assert_eq!(params[0].1, "../x", "decoded; the handler judges it");
    }
}
