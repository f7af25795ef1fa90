//! Splitting a stream of bytes into lines of text: the NDJSON answers the
//! client reads, and the instance logs the dashboard follows. One decoder,
//! [`LineCodec`], driven by tokio-util's [`FramedRead`] over a
//! [`StreamReader`] ([`lines`]).
//!
//! A line is what comes before a `\n`, without it, decoded as UTF-8 with
//! invalid bytes replaced by U+FFFD (a log holds whatever a process
//! printed). The last line of a stream need not end in `\n`. Lines to show
//! ([`LineCodec::for_display`]) also lose the `\r` of a CRLF line end, and a
//! runaway line that grows past a limit without its `\n` is handed out in
//! pieces rather than held.

use std::io;

use bytes::{Buf, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use tokio_util::codec::{Decoder, FramedRead};
use tokio_util::io::StreamReader;

/// Decodes lines (see the module documentation). It never fails.
#[derive(Debug, Clone, Default)]
pub struct LineCodec {
    /// Drop the `\r`s before a `\n`.
    strip_cr: bool,
    /// Hand out a line without its `\n` once it is longer than this.
    max_held: Option<usize>,
    /// Where the search for the next `\n` resumes: the buffer holds none
    /// before it.
    searched: usize,
}

impl LineCodec {
    /// Every line as it is, however long (NDJSON).
    pub fn new() -> LineCodec {
        LineCodec::default()
    }

    /// Lines to show: without a trailing `\r`, and a line that is longer
    /// than `max_held` bytes before its `\n` arrives is handed out as it is
    /// so far (its trailing `\r`s kept), the rest following as another.
    pub fn for_display(max_held: usize) -> LineCodec {
        LineCodec {
            strip_cr: true,
            max_held: Some(max_held),
            searched: 0,
        }
    }

    fn take(&mut self, buf: &mut BytesMut, len: usize) -> String {
        self.searched = 0;
        let bytes = buf.split_to(len);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Decoder for LineCodec {
    type Item = String;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<String>> {
        if let Some(at) = buf[self.searched..].iter().position(|b| *b == b'\n') {
            let end = self.searched + at;
            let mut line = self.take(buf, end + 1);
            line.pop();
            if self.strip_cr {
                line.truncate(line.trim_end_matches('\r').len());
            }
            return Ok(Some(line));
        }
        if self.max_held.is_some_and(|max| buf.len() > max) {
            return Ok(Some(self.take(buf, buf.len())));
        }
        self.searched = buf.len();
        Ok(None)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<String>> {
        if let Some(line) = self.decode(buf)? {
            return Ok(Some(line));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.take(buf, buf.len())))
    }
}

/// The lines of `stream`, decoded by `codec`. An error of the stream is
/// handed on as it came and ends the lines.
pub fn lines<S, B, E>(stream: S, codec: LineCodec) -> impl Stream<Item = Result<String, E>>
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
    E: std::error::Error + Send + Sync + 'static,
{
    let reader = StreamReader::new(stream.map_err(io::Error::other));
    FramedRead::new(reader, codec).filter_map(|line| {
        futures::future::ready(match line {
            Ok(line) => Some(Ok(line)),
            // Every error is one of the stream's, wrapped above: the codec
            // never fails and the reader only hands errors on.
            Err(e) => e
                .into_inner()
                .and_then(|inner| inner.downcast::<E>().ok())
                .map(|e| Err(*e)),
        })
    })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;

    use super::*;

    /// Feed `bytes` to a display codec whose buffer is `carry`, as a
    /// reader would, and take every line it hands out.
    fn split_lines(carry: &mut BytesMut, bytes: &[u8]) -> Vec<String> {
        let mut codec = LineCodec::for_display(16 * 1024);
        carry.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(line) = codec.decode(carry).unwrap() {
            lines.push(line);
        }
        lines
    }

    #[test]
    fn log_lines_are_split_across_reads() {
        let mut carry = BytesMut::new();
        assert_eq!(split_lines(&mut carry, b"one\ntw"), vec!["one"]);
        assert_eq!(
            split_lines(&mut carry, b"o\r\nthree\n"),
            vec!["two", "three"]
        );
        assert!(carry.is_empty());
        assert_eq!(
            split_lines(&mut carry, b"\xff\xfe bad utf8\n"),
            vec!["\u{fffd}\u{fffd} bad utf8"]
        );
        let long = vec![b'x'; 20 * 1024];
        let out = split_lines(&mut carry, &long);
        assert_eq!(out.len(), 1);
        assert!(carry.is_empty());
    }

    async fn collect<E: std::error::Error + Send + Sync + 'static>(
        chunks: Vec<Result<&'static str, E>>,
        codec: LineCodec,
    ) -> Vec<Result<String, E>> {
        let chunks = chunks
            .into_iter()
            .map(|c| c.map(|s| Bytes::from_static(s.as_bytes())));
        lines(futures::stream::iter(chunks), codec).collect().await
    }

    fn ok(lines: Vec<Result<String, Infallible>>) -> Vec<String> {
        lines.into_iter().flatten().collect()
    }

    #[tokio::test]
    async fn ndjson_keeps_lines_as_they_are() {
        let got = collect::<Infallible>(
            vec![Ok("{\"a\":1}\r\n{\"b\""), Ok(":2}\n\n{\"c\":3}")],
            LineCodec::new(),
        )
        .await;
        assert_eq!(ok(got), ["{\"a\":1}\r", "{\"b\":2}", "", "{\"c\":3}"]);
        // No line after a final newline, none at all in an empty stream.
        let got = collect::<Infallible>(vec![Ok("x\n"), Ok("")], LineCodec::new()).await;
        assert_eq!(ok(got), ["x"]);
        assert!(collect::<Infallible>(vec![], LineCodec::new())
            .await
            .is_empty());
    }

    #[tokio::test]
    async fn display_lines_lose_carriage_returns_and_runaways_come_in_pieces() {
        let got = collect::<Infallible>(
            vec![Ok("a\r\r\nb\r"), Ok("\nc\rd\n0123456789"), Ok("abc")],
            LineCodec::for_display(8),
        )
        .await;
        assert_eq!(ok(got), ["a", "b", "c\rd", "0123456789", "abc"]);
    }

    #[tokio::test]
    async fn a_stream_error_is_handed_on_and_ends_the_lines() {
        let got = collect(
            vec![
                Ok("one\ntw"),
                Err(io::Error::other("connection reset")),
                Ok("three\n"),
            ],
            LineCodec::new(),
        )
        .await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].as_ref().unwrap(), "one");
        assert_eq!(got[1].as_ref().unwrap_err().to_string(), "connection reset");
    }
}
