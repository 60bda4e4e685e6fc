//! Which listeners the daemon refuses: the API carries passwords, session
//! cookies and tokens, so a listener reachable from other hosts must be TLS,
//! either its own or a trusted reverse proxy's.

use crate::config::Daemon;

/// Why `[daemon] listen` must not be served as configured, if it must not.
pub fn refusal(daemon: &Daemon) -> Option<String> {
    let addr = daemon.listen?;
    if addr.ip().is_loopback() || daemon.tls.is_some() || daemon.trusted_proxy.is_some() {
        return None;
    }
    Some(format!(
        "[daemon] listen = \"{addr}\" is reachable from other hosts but has no TLS: set \
         [daemon] tls_cert and tls_key, or put a reverse proxy that terminates TLS in front \
         and name it in [daemon] trusted_proxy, or listen on a loopback address such as 127.0.0.1"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon(listen: &str) -> Daemon {
        Daemon {
            timezone_name: "UTC".into(),
            max_concurrent_runs: 1,
            shutdown_grace: std::time::Duration::from_secs(1),
            listen: Some(listen.parse().unwrap()),
            tls: None,
            trusted_proxy: None,
            metrics_token_file: None,
            restore_root: None,
            session_idle: std::time::Duration::from_secs(1800),
            session_lifetime: std::time::Duration::from_secs(12 * 3600),
            lease: std::time::Duration::from_secs(30),
            rerun_abandoned: crate::config::RerunAbandoned::Once,
        }
    }

    #[test]
    fn a_public_listener_needs_tls_or_a_trusted_proxy() {
        assert_eq!(refusal(&daemon("127.0.0.1:9464")), None);
        assert_eq!(refusal(&daemon("[::1]:9464")), None);
        let message = refusal(&daemon("0.0.0.0:9464")).unwrap();
        for key in ["tls_cert", "tls_key", "trusted_proxy", "0.0.0.0:9464"] {
            assert!(message.contains(key), "{message}");
        }
        let mut proxied = daemon("0.0.0.0:9464");
        proxied.trusted_proxy = Some("10.0.0.1".parse().unwrap());
        assert_eq!(refusal(&proxied), None);
        let mut tls = daemon("0.0.0.0:9464");
        tls.tls = Some(("c.pem".into(), "k.pem".into()));
        assert_eq!(refusal(&tls), None);
    }
}
