//! Endpoint URLs: which transports the server accepts, the loopback rule, and where change
//! streams are published next to a request endpoint.

use std::net::IpAddr;

use crate::error::{Error, Result, SqlState};

/// Checks a listen URL: `tcp://host:port` (loopback unless `allow_remote`) or `ipc://path`.
pub fn check_listen_url(url: &str, allow_remote: bool) -> Result<()> {
    if let Some(path) = url.strip_prefix("ipc://") {
        if path.is_empty() {
            return Err(bad(url, "an ipc:// URL needs a path"));
        }
        return Ok(());
    }
    let (host, _port) = tcp_host_port(url)?;
    if allow_remote || is_loopback(host) {
        Ok(())
    } else {
        Err(Error::new(
            SqlState::InsufficientPrivilege,
            format!(
                "{url} is not a loopback address; the server only listens on loopback unless --allow-remote is given"
            ),
        ))
    }
}

fn bad(url: &str, why: &str) -> Error {
    Error::new(
        SqlState::InvalidParameter,
        format!("invalid endpoint {url:?}: {why}"),
    )
}

/// Splits `tcp://host:port` (also `tcp4://`, `tcp6://`, `[v6]:port`).
fn tcp_host_port(url: &str) -> Result<(&str, u16)> {
    let rest = ["tcp://", "tcp4://", "tcp6://"]
        .iter()
        .find_map(|p| url.strip_prefix(p))
        .ok_or_else(|| {
            Error::new(
                SqlState::FeatureNotSupported,
                format!("endpoint {url:?}: only tcp:// and ipc:// transports are supported"),
            )
        })?;
    let colon = rest
        .rfind(':')
        .ok_or_else(|| bad(url, "a tcp:// URL needs host:port"))?;
    let (host, port) = (&rest[..colon], &rest[colon + 1..]);
    let port: u16 = port
        .parse()
        .map_err(|_| bad(url, "the port is not a number from 0 to 65535"))?;
    Ok((host.trim_start_matches('[').trim_end_matches(']'), port))
}

fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Where changes are published beside a request endpoint: the next TCP port, or the IPC path
/// with `.changes` appended.
pub fn default_change_url(url: &str) -> Result<String> {
    if let Some(path) = url.strip_prefix("ipc://") {
        return Ok(format!("ipc://{path}.changes"));
    }
    let (host, port) = tcp_host_port(url)?;
    let next = port
        .checked_add(1)
        .filter(|_| port != 0)
        .ok_or_else(|| bad(url, "give --changes-listen when the port is 0 or 65535"))?;
    let scheme = &url[..url.find("://").unwrap_or(0)];
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Ok(format!("{scheme}://{host}:{next}"))
}

/// The transport of a URL ("tcp" or "ipc"), used to pick the change URL matching the request
/// connection.
pub fn transport(url: &str) -> &str {
    match url.find("://") {
        Some(i) => url[..i].trim_end_matches(['4', '6']),
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_rule() {
        assert!(check_listen_url("tcp://127.0.0.1:7450", false).is_ok());
        assert!(check_listen_url("tcp://localhost:7450", false).is_ok());
        assert!(check_listen_url("tcp://[::1]:7450", false).is_ok());
        assert!(check_listen_url("ipc:///tmp/x.sock", false).is_ok());
        let e = check_listen_url("tcp://0.0.0.0:7450", false).unwrap_err();
        assert_eq!(e.state, SqlState::InsufficientPrivilege);
        assert!(check_listen_url("tcp://0.0.0.0:7450", true).is_ok());
        assert!(check_listen_url("tcp://10.1.2.3:1", false).is_err());
        assert_eq!(
            check_listen_url("ws://127.0.0.1:1", false)
                .unwrap_err()
                .state,
            SqlState::FeatureNotSupported
        );
        assert!(check_listen_url("tcp://127.0.0.1", false).is_err());
    }

    #[test]
    fn change_urls() {
        assert_eq!(
            default_change_url("tcp://127.0.0.1:7450").unwrap(),
            "tcp://127.0.0.1:7451"
        );
        assert_eq!(
            default_change_url("ipc:///tmp/o.sock").unwrap(),
            "ipc:///tmp/o.sock.changes"
        );
        assert_eq!(
            default_change_url("tcp://[::1]:9").unwrap(),
            "tcp://[::1]:10"
        );
        assert!(default_change_url("tcp://127.0.0.1:0").is_err());
        assert_eq!(transport("tcp4://x:1"), "tcp");
        assert_eq!(transport("ipc:///x"), "ipc");
    }
}
