//! Requests that are not HTTP/1.1 answered in the one error shape.
//!
//! hyper answers a request it cannot parse (a bad request line or header, a head too
//! large, a target too long) on its own, before any handler runs, with an empty body.
//! [`JsonParseErrors`] wraps a connection's stream and replaces exactly those
//! answers — status 400, 414 or 431 with no `Content-Type`, which every answer of the
//! server's own carries — by the same status with a JSON body, as every other error,
//! and the `Server-Timing` of an answer that ran no query (every answer has one).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::ApiError;

/// A connection's stream whose parse-error answers carry a JSON body.
pub(crate) struct JsonParseErrors<S> {
    inner: S,
    /// A replacement answer not yet all written, and how much of it is.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> JsonParseErrors<S> {
    pub(crate) fn new(inner: S) -> JsonParseErrors<S> {
        JsonParseErrors {
            inner,
            pending: None,
        }
    }
}

/// hyper's own answers are a head alone, well under this.
const MAX_OWN_ANSWER: usize = 512;

/// The JSON answer for hyper's own answer `head`, when it is one: a whole write that
/// is a 400, 414 or 431 head and nothing else (checked without scanning a body: this
/// runs on every write).
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    if head.len() > MAX_OWN_ANSWER
        || !(head.starts_with(b"HTTP/1.1 4") && head.ends_with(b"\r\n\r\n"))
    {
        return None;
    }
    let end = head.len() - 4;
    let text = std::str::from_utf8(&head[..end]).ok()?;
    let status = text.strip_prefix("HTTP/1.1 ")?.get(..3)?;
    let e = match status {
        "400" => ApiError::MalformedRequest,
        "414" => ApiError::UriTooLong,
        "431" => ApiError::HeadersTooLarge,
        _ => return None,
    };
    if text
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("content-type:"))
    {
        return None; // one of the server's own answers
    }
    let body = e.json().to_string();
    let reason = e.status().canonical_reason().unwrap_or("");
    // RFC 9110 §6.6.1: an origin server with a clock sends `Date` (hyper's own answer
    // has it; its value is kept, else the time now).
    let date = text
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("date")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(http_date_now);
    Some(
        format!(
            "HTTP/1.1 {status} {reason}\r\ndate: {date}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nserver-timing: {}\r\nconnection: close\r\n\r\n{body}",
            body.len(),
            crate::routes::NO_QUERY_TIMING
        )
        .into_bytes(),
    )
}

/// The time now as an HTTP date (RFC 9110 §5.6.7, IMF-fixdate).
fn http_date_now() -> String {
    chrono::DateTime::from_timestamp_millis(crate::now_ms())
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

impl<S: AsyncWrite + Unpin> JsonParseErrors<S> {
    /// Writes what is left of a replacement answer.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = &mut self.pending {
            if *done == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonParseErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonParseErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let Some(answer) = replacement(buf) {
            self.pending = Some((answer, 0));
            // What hyper wrote is taken whole; the replacement goes out in its place
            // (now as far as the socket takes it, the rest at the flush).
            let _ = self.drain(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(first) if replacement(first).is_some() => self.poll_write(cx, first),
            _ => Pin::new(&mut self.inner).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_own_answers_are_replaced() {
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 20:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(replacement(hyper_400).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        let body: serde_json::Value =
            serde_json::from_str(out.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "malformed_request");
        assert!(
            out.contains("\r\nserver-timing: query;dur=0, serialize;dur=0\r\n"),
            "{out}"
        );
        assert!(
            out.contains("\r\ndate: Thu, 03 Dec 2026 20:00:00 GMT\r\n"),
            "hyper's Date kept: {out}"
        );
        let too_large =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        let out = String::from_utf8(replacement(too_large).unwrap()).unwrap();
        assert!(out.contains("headers_too_large"));
        let date = out
            .lines()
            .find_map(|l| l.strip_prefix("date: "))
            .unwrap_or_else(|| panic!("a Date: {out}"));
        assert!(
            chrono::DateTime::parse_from_rfc2822(date).is_ok() && date.ends_with(" GMT"),
            "{date}"
        );
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert!(replacement(ours).is_none());
        assert!(replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(
            replacement(b"HTTP/1.1 400 Bad Req").is_none(),
            "a head cut short"
        );
    }
}
