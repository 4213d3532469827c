//! A few Redis commands over RESP, enough to remove the keys a benchmark run wrote under its
//! own prefix (the suite never touches anything else on a shared Redis).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use anyhow::{bail, Context, Result};

enum Reply {
    Bulk(Option<String>),
    Array(Vec<Reply>),
    Other,
}

pub struct Redis {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Redis {
    /// `redis://host:port[/db]`; no password support (the bench uses the test Redis).
    pub fn connect(url: &str) -> Result<Self> {
        let rest = url.strip_prefix("redis://").context("a redis:// URL")?;
        let hostport = rest.split('/').next().unwrap_or(rest);
        let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
        let stream = TcpStream::connect(hostport).with_context(|| format!("connect {hostport}"))?;
        // A Redis that stops answering fails the clean-up loudly rather than hanging it.
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        Ok(Self {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    fn command(&mut self, args: &[&str]) -> Result<Reply> {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.writer.write_all(out.as_bytes())?;
        self.reply()
    }

    fn reply(&mut self) -> Result<Reply> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let line = line.trim_end();
        let (kind, rest) = line.split_at(1.min(line.len()));
        Ok(match kind {
            "$" => {
                let len: i64 = rest.parse()?;
                if len < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut buf = vec![0; len as usize + 2];
                    std::io::Read::read_exact(&mut self.reader, &mut buf)?;
                    buf.truncate(len as usize);
                    Reply::Bulk(Some(String::from_utf8(buf)?))
                }
            }
            "*" => {
                let n: i64 = rest.parse()?;
                let mut items = Vec::new();
                for _ in 0..n.max(0) {
                    items.push(self.reply()?);
                }
                Reply::Array(items)
            }
            "-" => bail!("redis: {rest}"),
            _ => Reply::Other,
        })
    }

    /// Deletes every key that starts with `prefix`; returns how many.
    pub fn delete_prefix(&mut self, prefix: &str) -> Result<usize> {
        let pattern = format!("{prefix}*");
        let mut cursor = "0".to_owned();
        let mut deleted = 0;
        loop {
            let Reply::Array(parts) =
                self.command(&["SCAN", &cursor, "MATCH", &pattern, "COUNT", "1000"])?
            else {
                bail!("unexpected SCAN reply");
            };
            let mut parts = parts.into_iter();
            let (Some(Reply::Bulk(Some(next))), Some(Reply::Array(keys))) =
                (parts.next(), parts.next())
            else {
                bail!("unexpected SCAN reply");
            };
            let keys: Vec<String> = keys
                .into_iter()
                .filter_map(|k| match k {
                    Reply::Bulk(Some(k)) => Some(k),
                    _ => None,
                })
                .collect();
            if !keys.is_empty() {
                let mut args = vec!["UNLINK"];
                args.extend(keys.iter().map(String::as_str));
                self.command(&args)?;
                deleted += keys.len();
            }
            if next == "0" {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}
