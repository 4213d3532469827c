//! Just enough of the Postgres wire protocol to create a database, so that `cargo xtask cluster
//! up` can give its cluster a database of its own on a shared server without psql or a driver.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use anyhow::{bail, Context, Result};

/// `CREATE DATABASE <name>` on the server of `url` (`postgres://user@host:port/db`, trust
/// authentication), succeeding when it exists already. Returns the URL of the new database.
pub fn create_database(url: &str, name: &str) -> Result<String> {
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        bail!("{name:?}: a database name of [a-z0-9_] only");
    }
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .with_context(|| format!("{url}: not a postgres:// URL"))?;
    let (authority, db) = rest.split_once('/').unwrap_or((rest, "postgres"));
    let db = db.split('?').next().unwrap_or("postgres");
    let (user, hostport) = authority
        .rsplit_once('@')
        .unwrap_or(("postgres", authority));
    if user.contains(':') {
        bail!("{url}: only trust authentication is supported here; create the database yourself");
    }
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    };
    let mut stream =
        TcpStream::connect(&hostport).with_context(|| format!("connecting to {hostport}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;

    let mut params = Vec::new();
    for (k, v) in [("user", user), ("database", db)] {
        params.extend_from_slice(k.as_bytes());
        params.push(0);
        params.extend_from_slice(v.as_bytes());
        params.push(0);
    }
    params.push(0);
    let mut startup = Vec::new();
    startup.extend_from_slice(&(8 + params.len() as u32).to_be_bytes());
    startup.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
    startup.extend_from_slice(&params);
    stream.write_all(&startup)?;
    wait_ready(&mut stream, false)?;

    let sql = format!("create database {name}\0");
    let mut query = vec![b'Q'];
    query.extend_from_slice(&(4 + sql.len() as u32).to_be_bytes());
    query.extend_from_slice(sql.as_bytes());
    stream.write_all(&query)?;
    wait_ready(&mut stream, true)?;
    let _ = stream.write_all(&[b'X', 0, 0, 0, 4]);
    Ok(format!("postgres://{user}@{hostport}/{name}"))
}

/// Reads messages until ReadyForQuery. An ErrorResponse fails, except `duplicate_database`
/// (42P04) when `exists_ok`: the database is there, which is all we want.
fn wait_ready(stream: &mut TcpStream, exists_ok: bool) -> Result<()> {
    let mut failure = None;
    loop {
        let mut header = [0u8; 5];
        stream
            .read_exact(&mut header)
            .context("reading from Postgres")?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        stream.read_exact(&mut body)?;
        match header[0] {
            b'R' if body.get(..4) != Some(&[0, 0, 0, 0]) => {
                bail!("Postgres asks for a password; only trust authentication is supported here")
            }
            b'E' => {
                // Fields: a type byte and a NUL-terminated string each; `C` is the SQLSTATE.
                let field = |t: u8| {
                    body.split(|&b| b == 0)
                        .find(|f| f.first() == Some(&t))
                        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
                        .unwrap_or_default()
                };
                if !(exists_ok && field(b'C') == "42P04") {
                    failure = Some(field(b'M'));
                }
                // During start-up an error ends the connection: no ReadyForQuery follows.
                if !exists_ok {
                    break;
                }
            }
            b'Z' => break,
            _ => {}
        }
    }
    match failure {
        Some(message) => bail!("Postgres: {message}"),
        None => Ok(()),
    }
}
