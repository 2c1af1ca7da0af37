//! `check`'s probes of the feed: the API accepts the credentials and lists the corp's sites,
//! and the feed of every site answers for the smallest window it serves. A site the feed does
//! not know is answered with the fix: most often the dashboard's display name was written
//! where the API name belongs.

use std::time::Duration;

use super::FeedError;
use super::client::FeedClient;
use super::model::SiteWire;
use crate::config::{ApiConfig, Sites};
use crate::source::{Probe, ProbeOutcome};
use crate::time::{align_down, rfc3339};

fn line(outcome: ProbeOutcome, what: impl Into<String>, detail: impl Into<String>) -> Probe {
    Probe {
        outcome,
        what: what.into(),
        detail: detail.into(),
    }
}

/// Probes the feed of `api`'s corp and sites; a window ends `delay_secs` before now (at least
/// five minutes).
pub(super) async fn probe(configured: &ApiConfig, delay_secs: i64) -> Vec<Probe> {
    let mut api = configured.clone();
    // One retry at most: a check must answer in seconds, not back off for minutes.
    api.max_attempts = api.max_attempts.min(2);
    let client = match FeedClient::with_retry_delays(
        &api,
        Duration::from_millis(200),
        Duration::from_secs(2),
    ) {
        Ok(c) => c,
        // Unreachable after a passing preflight (the same settings built), kept exit-2 anyway.
        Err(e) => return vec![line(ProbeOutcome::Invalid, "api", e.to_string())],
    };
    let mut lines = Vec::new();
    let listed = client.list_sites().await;
    match &listed {
        Ok(sites) => lines.push(line(
            ProbeOutcome::Ok,
            "api",
            format!(
                "{} accepted the credentials of `{}`; corp `{}` has {} site(s): {}",
                configured.base_url,
                configured.auth.email,
                configured.corp,
                sites.len(),
                sites
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        Err(e) => lines.push(line(ProbeOutcome::Fail, "api", e.to_string())),
    }
    let sites: Vec<String> = match (&configured.sites, &listed) {
        (Sites::List(s), _) => s.clone(),
        (Sites::All, Ok(found)) => found.iter().map(|s| s.name.clone()).collect(),
        (Sites::All, Err(_)) => Vec::new(),
    };
    // The smallest window the API accepts: the newest full minute it serves.
    let until = align_down(crate::time::now() - delay_secs.max(300));
    let from = until - 60;
    for site in sites {
        let what = format!("site {site}");
        match client.first_page(&site, from, until).await {
            Ok(page) => lines.push(line(
                ProbeOutcome::Ok,
                what,
                format!(
                    "feed answered: {} request(s) in {} .. {}",
                    page.events.len(),
                    rfc3339(from),
                    rfc3339(until)
                ),
            )),
            Err(e @ FeedError::NotFound { .. }) => {
                let hint = match &listed {
                    Ok(found) => not_found_hint(&site, found),
                    Err(_) => String::new(),
                };
                lines.push(line(ProbeOutcome::Fail, what, format!("{e}{hint}")));
            }
            Err(e) => lines.push(line(ProbeOutcome::Fail, what, e.to_string())),
        }
    }
    lines
}

/// The fix for a site the feed does not know: the most common cause is the dashboard's display
/// name written where the API name belongs (it passes config validation when it has no space).
fn not_found_hint(site: &str, found: &[SiteWire]) -> String {
    match found.iter().find(|s| {
        s.display_name
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case(site))
    }) {
        Some(s) => format!(
            "; `{site}` is the display name of site `{}`: use sites = [\"{}\"]",
            s.name, s.name
        ),
        None => format!(
            "; the corp's sites are: {}",
            found
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(name: &str, display: Option<&str>) -> SiteWire {
        SiteWire {
            name: name.to_string(),
            display_name: display.map(str::to_string),
        }
    }

    #[test]
    fn a_display_name_is_answered_with_the_api_name() {
        let found = [
            site("www-prod", Some("Storefront")),
            site("api", Some("API Gateway")),
        ];
        let hint = not_found_hint("storefront", &found);
        assert_eq!(
            hint,
            "; `storefront` is the display name of site `www-prod`: use sites = [\"www-prod\"]"
        );
    }

    #[test]
    fn an_unknown_name_is_answered_with_the_real_names() {
        let found = [site("www-prod", Some("Storefront")), site("api", None)];
        assert_eq!(
            not_found_hint("shop", &found),
            "; the corp's sites are: www-prod, api"
        );
    }
}
