//! Tag filters: which requests are spooled at all (`[filters]` in the config).
//!
//! `include_tags` keeps a request that carries at least one of the listed signal types;
//! `exclude_tags` drops a request that carries any of them (exclude wins). The check here is the
//! source of truth and runs on every page. The API's `tags=` parameter is only a saving on
//! transfer: the API documentation does not say whether `tags=A,B` means A or B (what
//! `include_tags` means) or A and B (which would silently lose requests), so it is sent only for
//! a single include tag, where both readings agree. Requests filtered out are never spooled; the
//! site's cursor still moves over them.

use std::collections::BTreeMap;

use super::request::{TagsOnly, parse_object};

/// One include/exclude pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagFilter {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl TagFilter {
    /// A filter from already validated (see [`check_tag_name`]) signal names.
    pub fn new(include: Vec<String>, exclude: Vec<String>) -> TagFilter {
        TagFilter { include, exclude }
    }

    /// Signal types a kept request must have one of (empty: no such condition).
    pub fn include(&self) -> &[String] {
        &self.include
    }

    /// Signal types that drop a request.
    pub fn exclude(&self) -> &[String] {
        &self.exclude
    }

    /// True when the filter keeps everything.
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// The `tags=` value for the feed query: the include tag when there is exactly one (see the
    /// module docs for why never several).
    pub fn query_value(&self) -> Option<String> {
        match self.include.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        }
    }

    /// Whether a request with these signal types is kept (names compared case-insensitively).
    pub fn keep_types<'t>(&self, types: impl IntoIterator<Item = &'t str>) -> bool {
        let mut included = self.include.is_empty();
        for t in types {
            if self.exclude.iter().any(|e| e.eq_ignore_ascii_case(t)) {
                return false;
            }
            included = included || self.include.iter().any(|i| i.eq_ignore_ascii_case(t));
        }
        included
    }

    /// Whether the request record `body` (the API's JSON) is kept. A record whose tags cannot
    /// be read counts as having none.
    pub fn keep(&self, body: &str) -> bool {
        if self.is_empty() {
            return true;
        }
        let mut scratch = String::new();
        let tags: TagsOnly<'_> = parse_object(body, &mut scratch);
        self.keep_types(tags.tags.0.iter().map(|t| t.kind.as_ref()))
    }
}

/// Validated `[filters]`: the global filter and per-site replacements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    global: TagFilter,
    sites: BTreeMap<String, TagFilter>,
    server_side: bool,
}

impl Filters {
    /// `sites` replace `global` as a whole for the sites they name.
    pub fn new(global: TagFilter, sites: BTreeMap<String, TagFilter>, server_side: bool) -> Self {
        Filters {
            global,
            sites,
            server_side,
        }
    }

    /// The filter that applies to `site`.
    pub fn for_site(&self, site: &str) -> &TagFilter {
        self.sites.get(site).unwrap_or(&self.global)
    }

    /// Whether include lists are sent to the API as `tags=`.
    pub fn server_side(&self) -> bool {
        self.server_side
    }

    /// The sites with their own filter.
    pub fn site_names(&self) -> impl Iterator<Item = &str> {
        self.sites.keys().map(String::as_str)
    }
}

/// Checks a signal name from `include_tags` / `exclude_tags` against the forms the API uses:
/// system signals are upper-case letters, digits, `-` and `_` (`SQLI`, `LOG4J-JNDI`,
/// `HTTP404`); custom signals are `site.` or `corp.` followed by letters, digits, `-`, `_` and
/// `.` (`site.my-signal`, `corp.login-failure`). A name of neither form can match nothing the
/// feed sends, and sent as `tags=` it could make the API return nothing at all, so it is
/// refused here with what to write instead.
pub fn check_tag_name(name: &str) -> Result<(), String> {
    const FORMS: &str = "system signals are upper-case letters, digits, `-` and `_` (SQLI, \
                         LOG4J-JNDI); custom signals start with `site.` or `corp.` \
                         (site.my-signal, corp.foo)";
    if name.is_empty() {
        return Err("empty tag name".to_string());
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{}` contains whitespace: one signal name per string, without spaces",
            name.escape_debug()
        ));
    }
    if name.contains(',') {
        return Err(format!(
            "`{name}` contains a comma: list each signal as its own string, e.g. [\"SQLI\", \"XSS\"]"
        ));
    }
    let custom = ["site.", "corp."]
        .into_iter()
        .find_map(|prefix| name.strip_prefix(prefix));
    if let Some(rest) = custom {
        if rest.is_empty() {
            return Err(format!(
                "`{name}` has nothing after the prefix: custom signals look like site.my-signal"
            ));
        }
        let bad = rest
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
        return match bad {
            Some(c) => Err(format!("`{name}` contains `{c}`: {FORMS}")),
            None => Ok(()),
        };
    }
    if name.contains('.') {
        return Err(format!("`{name}` is not a signal name: {FORMS}"));
    }
    let system = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || matches!(c, '-' | '_');
    if let Some(c) = name.chars().find(|&c| !system(c)) {
        let upper = name.to_ascii_uppercase();
        if upper.chars().all(system) {
            return Err(format!(
                "`{name}` is not a signal name: did you mean {upper}? {FORMS}"
            ));
        }
        return Err(format!("`{name}` contains `{c}`: {FORMS}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(include: &[&str], exclude: &[&str]) -> TagFilter {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        TagFilter::new(v(include), v(exclude))
    }

    #[test]
    fn include_and_exclude_semantics() {
        let cases: &[(TagFilter, &[&str], bool)] = &[
            (f(&[], &[]), &[], true),
            (f(&[], &[]), &["SQLI"], true),
            (f(&["SQLI", "XSS"], &[]), &["XSS", "BLOCKED"], true),
            (f(&["SQLI", "XSS"], &[]), &["HTTP404"], false),
            (f(&["SQLI"], &[]), &[], false),
            (f(&[], &["HTTP404"]), &["HTTP404"], false),
            (f(&[], &["HTTP404"]), &["SQLI"], true),
            (f(&[], &["HTTP404"]), &[], true),
            (f(&["SQLI"], &["BLOCKED"]), &["SQLI", "BLOCKED"], false),
            (f(&["SQLI"], &["BLOCKED"]), &["sqli"], true),
            (
                f(&["site.my-signal"], &[]),
                &["site.my-signal", "SQLI"],
                true,
            ),
            (f(&["site.my-signal"], &[]), &["corp.my-signal"], false),
            (
                f(&[], &["corp.noisy-bot"]),
                &["XSS", "corp.noisy-bot"],
                false,
            ),
        ];
        for (filter, types, want) in cases {
            assert_eq!(
                filter.keep_types(types.iter().copied()),
                *want,
                "{filter:?} {types:?}"
            );
        }
    }

    #[test]
    fn reads_tags_from_the_record() {
        let body = r#"{"id":"a","tags":[{"type":"SQLI"},{"type":"BLOCKED"}]}"#;
        assert!(f(&["SQLI"], &[]).keep(body));
        assert!(!f(&["XSS"], &[]).keep(body));
        assert!(!f(&[], &["BLOCKED"]).keep(body));
        assert!(f(&[], &[]).keep("not even json"));
        assert!(!f(&["SQLI"], &[]).keep("[1]"));
        assert!(!f(&["SQLI"], &[]).keep(r#"[[{"type":"SQLI"}]]"#));
        assert!(f(&[], &["SQLI"]).keep(r#"{"tags":null}"#));
        assert!(f(&[], &[]).keep(body));
    }

    #[test]
    fn only_a_single_include_tag_goes_to_the_api() {
        let cases: &[(TagFilter, Option<&str>)] = &[
            (f(&[], &[]), None),
            (f(&["SQLI"], &[]), Some("SQLI")),
            (f(&["site.my-signal"], &["BLOCKED"]), Some("site.my-signal")),
            // AND or OR for several names is not documented: filter those client-side only.
            (f(&["SQLI", "XSS"], &[]), None),
            (f(&[], &["XSS"]), None),
        ];
        for (filter, want) in cases {
            assert_eq!(filter.query_value().as_deref(), *want, "{filter:?}");
        }
    }

    #[test]
    fn per_site_filter_replaces_the_global_one() {
        let mut sites = BTreeMap::new();
        sites.insert("api".to_string(), f(&[], &["HTTP404"]));
        let filters = Filters::new(f(&["SQLI"], &[]), sites, true);
        assert_eq!(filters.for_site("www").include(), ["SQLI"]);
        assert!(filters.for_site("api").include().is_empty());
        assert!(filters.for_site("api").keep_types(["XSS"]));
    }

    #[test]
    fn tag_names() {
        for ok in [
            "SQLI",
            "LOG4J-JNDI",
            "HTTP404",
            "AWS-SSRF",
            "MY_SIGNAL",
            "site.my-signal",
            "corp.foo",
            "site.login-failure.v2",
            "corp.rate_limit_1",
            "site.MySignal",
        ] {
            assert!(check_tag_name(ok).is_ok(), "{ok}");
        }
        // (name, a word the error must contain)
        for (bad, why) in [
            ("", "empty"),
            ("SQL I", "whitespace"),
            ("XSS,SQLI", "comma"),
            ("site.my signal", "whitespace"),
            (" SQLI", "whitespace"),
            ("SQLI\t", "whitespace"),
            ("sqli", "SQLI"),
            ("site.", "after"),
            ("foo.bar", "site."),
            ("SITE.x", "site."),
            ("site.a/b", "`/`"),
            ("XSS;", "`;`"),
        ] {
            let err = check_tag_name(bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
