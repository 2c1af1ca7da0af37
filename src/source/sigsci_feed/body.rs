//! Reading a reply's body with a size cap, chunk by chunk, so a huge or endless page is refused
//! once the cap is passed instead of landing whole in memory; and refusing a body in an encoding
//! the client never asked for.
//!
//! The cap on a feed page is [`MAX_PAGE_BYTES`], 64 MiB. A page holds at most `api.page_limit`
//! records (1000, the API's maximum, by default) of about 1 to 2 KB each, so a real page is 1 to
//! 2 MB; the cap leaves a margin of 30 to 60 times that for sites with unusually large records,
//! while a hostile or broken reply (the case that prompted it: 400 MB for 1000 records asked)
//! costs at most 64 MiB. It is not a setting: a site whose pages really pass it lowers
//! `api.page_limit`, which makes every page smaller.

use reqwest::header::{CONTENT_ENCODING, HeaderMap};

use super::FeedError;

/// The largest feed page body read; see the module's documentation.
pub(crate) const MAX_PAGE_BYTES: usize = 64 << 20;

/// The most of an error reply's body read: only a short excerpt of it is ever shown.
pub(crate) const MAX_ERROR_BYTES: usize = 64 << 10;

/// A body, or why it was not read whole.
#[derive(Debug)]
pub(crate) enum Read {
    /// All of it.
    Whole(Vec<u8>),
    /// The first `cap` bytes; the body is longer (or says so in `Content-Length`, in which case
    /// nothing was read and the vector is empty).
    Over(Vec<u8>),
}

/// Reads `resp`'s body, at most `cap` bytes of it. A `Content-Length` above the cap stops it
/// before the first byte; otherwise chunks are added until the body ends or passes the cap.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    cap: usize,
) -> Result<Read, reqwest::Error> {
    let declared = resp.content_length();
    if declared.is_some_and(|n| n > cap as u64) {
        return Ok(Read::Over(Vec::new()));
    }
    // Sized once from the declared length (already checked against the cap).
    let mut body = Vec::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > cap {
            let room = cap - body.len();
            body.extend_from_slice(&chunk[..room]);
            return Ok(Read::Over(body));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Read::Whole(body))
}

/// The body of a `200` feed page, or [`FeedError::Refused`] when it passes `cap`.
pub(crate) async fn page(resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, FeedError> {
    let declared = resp.content_length();
    match read_capped(resp, cap).await {
        Ok(Read::Whole(body)) => Ok(body),
        Ok(Read::Over(_)) => Err(FeedError::Refused {
            reason: format!(
                "refused a feed page larger than the {} MiB cap{}: a page of api.page_limit \
                 records is normally 1 to 2 MB; the API or a proxy sent a broken reply (if this \
                 site's records really are that large, lower api.page_limit)",
                cap >> 20,
                declared
                    .map(|n| format!(" (Content-Length {n} bytes)"))
                    .unwrap_or_default()
            ),
        }),
        Err(e) => Err(FeedError::Transient {
            reason: format!(
                "reading the reply body failed: {}",
                super::transport::describe(e)
            ),
        }),
    }
}

/// [`FeedError::Refused`] if the reply is in a `Content-Encoding` other than `identity`. The
/// client asks for none (no `Accept-Encoding`), so a compressed body means a proxy or server
/// that ignores the request's headers, and retrying gets the same undecodable bytes.
pub(crate) fn check_encoding(headers: &HeaderMap) -> Result<(), FeedError> {
    let Some(value) = headers.get(CONTENT_ENCODING) else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    if text.trim().is_empty() || text.trim().eq_ignore_ascii_case("identity") {
        return Ok(());
    }
    let shown: String = text.chars().take(40).collect();
    Err(FeedError::Refused {
        reason: format!(
            "the API answered with `Content-Encoding: {shown}`, which the exporter did not ask \
             for and cannot read; a proxy between it and api.base_url probably compresses \
             replies: turn that off for the API's path"
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// One HTTP/1.1 reply, `head` then `body` in chunks of 1000, on a fresh loopback server;
    /// returns the server's URL and how many body bytes it got to write.
    async fn serve(head: String, body: Vec<u8>) -> (String, tokio::task::JoinHandle<usize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            sock.write_all(head.as_bytes()).await.unwrap();
            let mut written = 0;
            for chunk in body.chunks(1000) {
                if sock.write_all(chunk).await.is_err() {
                    break;
                }
                written += chunk.len();
            }
            written
        });
        (url, task)
    }

    async fn get(url: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_body_within_the_cap_is_read_whole() {
        let body = vec![b'x'; 5000];
        let (url, _) = serve(
            "HTTP/1.1 200 OK\r\ncontent-length: 5000\r\nconnection: close\r\n\r\n".into(),
            body.clone(),
        )
        .await;
        match read_capped(get(&url).await, 5000).await.unwrap() {
            Read::Whole(got) => assert_eq!(got, body),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_declared_length_over_the_cap_reads_nothing() {
        let (url, _) = serve(
            "HTTP/1.1 200 OK\r\ncontent-length: 5001\r\nconnection: close\r\n\r\n".into(),
            vec![b'x'; 5001],
        )
        .await;
        let err = page(get(&url).await, 5000).await.unwrap_err();
        assert!(matches!(err, FeedError::Refused { .. }), "{err:?}");
        assert!(err.to_string().contains("Content-Length 5001"), "{err}");
        assert!(err.to_string().contains("api.page_limit"), "{err}");
    }

    #[tokio::test]
    async fn an_undeclared_body_stops_at_the_cap() {
        // Close-delimited, no length: only counting tells.
        let (url, _) = serve(
            "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".into(),
            vec![b'x'; 4500],
        )
        .await;
        match read_capped(get(&url).await, 4000).await.unwrap() {
            Read::Over(got) => assert_eq!(got.len(), 4000),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_identity_encoding_is_accepted() {
        let mut h = HeaderMap::new();
        assert!(check_encoding(&h).is_ok());
        h.insert(CONTENT_ENCODING, "identity".parse().unwrap());
        assert!(check_encoding(&h).is_ok());
        for enc in ["gzip", "br", "x-weird"] {
            h.insert(CONTENT_ENCODING, enc.parse().unwrap());
            let err = check_encoding(&h).unwrap_err();
            assert!(err.needs_operator());
            assert!(err.to_string().contains(enc), "{err}");
        }
    }
}
