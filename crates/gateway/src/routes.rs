//! Which route a request is on: method and path pattern to an endpoint id.

use http::Method;

use crate::config::Route;

/// The routes sharing one path pattern: each with its method (any when `None`)
/// and its endpoint id, in the order written.
type ByMethod = Vec<(Option<Method>, u32)>;

/// The routes of a configuration, ready to match.
#[derive(Clone)]
pub struct RouteTable {
    router: matchit::Router<ByMethod>,
}

impl RouteTable {
    /// A table of `routes`; a route's index is its endpoint id. Routes with the
    /// same pattern are told apart by method, the first written winning.
    pub fn new(routes: &[Route]) -> Self {
        let mut patterns: Vec<(&str, ByMethod)> = Vec::new();
        for (index, route) in routes.iter().enumerate() {
            let entry = (route.method.clone(), index as u32);
            match patterns.iter_mut().find(|(p, _)| *p == route.path) {
                Some((_, methods)) => methods.push(entry),
                None => patterns.push((&route.path, vec![entry])),
            }
        }
        let mut router = matchit::Router::new();
        for (pattern, methods) in patterns {
            // Patterns were checked when the configuration was loaded; one that
            // still conflicts (e.g. the same parameter under two names) is skipped.
            if let Err(err) = router.insert(pattern, methods) {
                tracing::warn!(%pattern, %err, "route pattern skipped");
            }
        }
        Self { router }
    }

    /// The endpoint id of the route `method path` is on, if any.
    pub fn find(&self, method: &Method, path: &str) -> Option<u32> {
        let matched = self.router.at(path).ok()?;
        matched
            .value
            .iter()
            .find(|(m, _)| m.as_ref().is_none_or(|m| m == method))
            .map(|(_, id)| *id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, method: Option<Method>, path: &str) -> Route {
        Route {
            name: name.into(),
            method,
            path: path.into(),
            upstream: 0,
        }
    }

    #[test]
    fn matches_method_and_pattern_first_written_first() {
        let table = RouteTable::new(&[
            route(
                "user-list",
                Some(Method::GET),
                "/dev/v1/channel/user/{appid}/{channel}",
            ),
            route("submit", Some(Method::POST), "/v1/applications"),
            route("apps-any", None, "/v1/applications"),
            route("rest", None, "/{*rest}"),
        ]);
        assert_eq!(
            table.find(&Method::GET, "/dev/v1/channel/user/app1/lobby"),
            Some(0)
        );
        assert_eq!(table.find(&Method::POST, "/v1/applications"), Some(1));
        assert_eq!(table.find(&Method::GET, "/v1/applications"), Some(2));
        assert_eq!(table.find(&Method::DELETE, "/anything/else"), Some(3));
        let none = RouteTable::new(&[route("only", Some(Method::GET), "/a")]);
        assert_eq!(none.find(&Method::POST, "/a"), None);
        assert_eq!(none.find(&Method::GET, "/b"), None);
    }
}
