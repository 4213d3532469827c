//! Just enough URL handling to probe a service and to print its URL safely.
//!
//! The probes need only the host and port, and pulling in a URL crate would cost the compile time
//! this crate exists to avoid. Unix-socket URLs (`postgres:///db?host=/run/postgresql`) are
//! rejected: the tests connect over TCP.

use std::{
    io,
    net::{TcpStream, ToSocketAddrs},
    time::Duration,
};

use anyhow::{bail, Context, Result};

/// Where a `scheme://[user[:password]@]host[:port][/path][?query]` URL points.
#[derive(Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// Whether the URL carries a password (Redis answers `-NOAUTH` to a bare PING then).
    pub has_password: bool,
}

impl Endpoint {
    /// Parses `url`, using `default_port` when it names none.
    pub fn parse(url: &str, default_port: u16) -> Result<Endpoint> {
        let shown = redact(url);
        let Some((_scheme, rest)) = url.split_once("://") else {
            bail!("`{shown}` is not a URL: it has no `://`");
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority),
        };
        let (host, port) = match host_port.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed
                    .split_once(']')
                    .with_context(|| format!("`{shown}`: unclosed `[` in the host"))?;
                (host, after.strip_prefix(':'))
            }
            None => match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            },
        };
        if host.is_empty() {
            bail!("`{shown}` names no host; the tests need a TCP host and port");
        }
        let port = match port {
            None | Some("") => default_port,
            Some(port) => port
                .parse()
                .with_context(|| format!("`{shown}`: `{port}` is not a port number"))?,
        };
        Ok(Endpoint {
            host: host.to_owned(),
            port,
            has_password: userinfo.is_some_and(|userinfo| userinfo.contains(':')),
        })
    }

    /// Opens a TCP connection, giving up on each resolved address after `timeout`, and sets the
    /// same timeout on reads and writes so that a probe can never hang.
    pub fn connect(&self, timeout: Duration) -> Result<TcpStream> {
        let addrs = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .with_context(|| format!("resolving {self}"))?;
        let mut last_err = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(timeout))?;
                    stream.set_write_timeout(Some(timeout))?;
                    return Ok(stream);
                }
                Err(err) => last_err = err,
            }
        }
        Err(last_err).with_context(|| format!("connecting to {self}"))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The error for a server that accepted a probe's connection but did not answer its `request`,
/// saying "no answer within 2s" rather than the EAGAIN a read timeout surfaces as.
pub fn no_answer(
    err: io::Error,
    endpoint: &Endpoint,
    request: &str,
    timeout: Duration,
) -> anyhow::Error {
    match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            anyhow::anyhow!(
                "{endpoint} accepted a connection but did not answer {request} within {timeout:?}"
            )
        }
        io::ErrorKind::UnexpectedEof => {
            anyhow::anyhow!("{endpoint} closed the connection without answering {request}")
        }
        _ => anyhow::Error::new(err).context(format!("waiting for {endpoint} to answer {request}")),
    }
}

/// `url` with its password, if any, replaced by `***`, for printing.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(host: &str, port: u16, has_password: bool) -> Endpoint {
        Endpoint {
            host: host.to_owned(),
            port,
            has_password,
        }
    }

    #[test]
    fn parses_host_port_and_defaults_the_port() {
        let parse = |url| Endpoint::parse(url, 5432).unwrap();
        assert_eq!(
            parse("postgres://postgres@127.0.0.1:5433/postgres"),
            endpoint("127.0.0.1", 5433, false)
        );
        assert_eq!(
            parse("postgres://u:p@db.internal/herald?sslmode=disable"),
            endpoint("db.internal", 5432, true)
        );
        assert_eq!(
            parse("postgresql://localhost"),
            endpoint("localhost", 5432, false)
        );
        assert_eq!(
            parse("redis://:secret@[::1]:6380/0"),
            endpoint("::1", 6380, true)
        );
        assert_eq!(parse("redis://h:/0"), endpoint("h", 5432, false));
    }

    #[test]
    fn rejects_what_the_probes_cannot_use() {
        assert!(Endpoint::parse("127.0.0.1:5432", 5432).is_err());
        assert!(Endpoint::parse("postgres:///db?host=/run/postgresql", 5432).is_err());
        assert!(Endpoint::parse("postgres://h:port/db", 5432).is_err());
        let err = Endpoint::parse("postgres://u:hunter2@h:x/db", 5432).unwrap_err();
        assert!(!format!("{err:#}").contains("hunter2"));
    }

    #[test]
    fn redacts_only_the_password() {
        assert_eq!(
            redact("postgres://u:hunter2@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("redis://:hunter2@h"), "redis://:***@h");
        assert_eq!(
            redact("postgres://postgres@h/db"),
            "postgres://postgres@h/db"
        );
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
    }
}
