//! The brokers the publisher may connect to: `[mqtt] servers` (a cluster's nodes) or the
//! single `host`/`port`, and the order they are tried in. The driver connects to the
//! first that answers and, when a connection is lost, moves on to the next, round the
//! list, forever ([`Rotation`]).

use std::fmt;

use crate::problems::Problems;

/// One broker address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Host name or address (IPv6 without brackets); also the name TLS verifies.
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Server {
    /// `host:port`, `[v6]:port`; `None` with the reason when it is neither.
    pub fn parse(text: &str) -> Result<Server, String> {
        let text = text.trim();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, port) = rest
                .split_once("]:")
                .ok_or("an IPv6 address needs a port: \"[2001:db8::1]:1883\"")?;
            (host, port)
        } else {
            let (host, port) = text
                .rsplit_once(':')
                .ok_or("must be \"host:port\" (IPv6 in brackets)")?;
            if host.contains(':') {
                return Err("an IPv6 address goes in brackets: \"[2001:db8::1]:1883\"".into());
            }
            (host, port)
        };
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(format!("{host:?} is not a host name or address"));
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("port {port:?} must be 1..=65535")),
        };
        Ok(Server {
            host: host.to_owned(),
            port,
        })
    }
}

/// The order `servers` are tried in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServersOrder {
    /// As listed: every box prefers the first node.
    #[default]
    InOrder,
    /// Shuffled once at start, so many boxes spread over the nodes.
    Shuffle,
}

/// `[mqtt] servers`, `servers_order`, `host` and `port`, checked: the list to try.
pub fn check(
    host: Option<String>,
    port: Option<i64>,
    servers: Option<Vec<String>>,
    order: Option<String>,
    p: &mut Problems,
) -> Option<(Vec<Server>, ServersOrder)> {
    let order = match order.as_deref() {
        None | Some("in-order") => Some(ServersOrder::InOrder),
        Some("shuffle") => Some(ServersOrder::Shuffle),
        Some(other) => {
            p.add(
                "mqtt.servers_order",
                format!("{other:?} must be \"in-order\" or \"shuffle\""),
            );
            None
        }
    };
    let Some(list) = servers else {
        let alone = order == Some(ServersOrder::Shuffle);
        if alone {
            p.add("mqtt.servers_order", "needs mqtt.servers");
        }
        let host = host.unwrap_or_else(|| "127.0.0.1".to_owned());
        if host.trim().is_empty() {
            p.add("mqtt.host", "must not be empty");
        }
        let port = p.range("mqtt.port", port.unwrap_or(1883), 1, 65535);
        let server = Server {
            host,
            port: port? as u16,
        };
        return (!alone).then_some((vec![server], order?));
    };
    let mut ok = true;
    for (field, set) in [("mqtt.host", host.is_some()), ("mqtt.port", port.is_some())] {
        if set {
            p.add(
                field,
                "mqtt.servers and mqtt.host/port are exclusive: use one",
            );
            ok = false;
        }
    }
    if list.is_empty() {
        p.add("mqtt.servers", "must list at least one \"host:port\"");
        ok = false;
    }
    let mut parsed: Vec<Server> = Vec::with_capacity(list.len());
    for (i, text) in list.iter().enumerate() {
        match Server::parse(text) {
            Ok(s) if parsed.contains(&s) => {
                p.add(format!("mqtt.servers[{i}]"), format!("{s} is listed twice"));
                ok = false;
            }
            Ok(s) => parsed.push(s),
            Err(e) => {
                p.add(format!("mqtt.servers[{i}]"), format!("{text:?}: {e}"));
                ok = false;
            }
        }
    }
    ok.then_some((parsed, order?))
}

/// Which server the next connection goes to.
#[derive(Debug, Clone)]
pub struct Rotation {
    servers: Vec<Server>,
    at: usize,
}

impl Rotation {
    /// `servers` in `order` (shuffled now when asked).
    pub fn new(mut servers: Vec<Server>, order: ServersOrder) -> Rotation {
        if order == ServersOrder::Shuffle {
            fastrand::shuffle(&mut servers);
        }
        Rotation { servers, at: 0 }
    }

    /// The server to connect to now.
    pub fn current(&self) -> &Server {
        &self.servers[self.at % self.servers.len().max(1)]
    }

    /// Moves on to the next server (round the list); true when that is another one.
    pub fn advance(&mut self) -> bool {
        self.at = (self.at + 1) % self.servers.len().max(1);
        self.servers.len() > 1
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(host: &str, port: u16) -> Server {
        Server {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn addresses_parse_and_print_with_ipv6_in_brackets() {
        assert_eq!(
            Server::parse("10.0.0.11:1883"),
            Ok(server("10.0.0.11", 1883))
        );
        assert_eq!(
            Server::parse("broker.lan:8883"),
            Ok(server("broker.lan", 8883))
        );
        let v6 = Server::parse("[2001:db8::1]:1883").expect("v6");
        assert_eq!(v6, server("2001:db8::1", 1883));
        assert_eq!(v6.to_string(), "[2001:db8::1]:1883");
        assert!(Server::parse("2001:db8::1:1883")
            .expect_err("refused")
            .contains("brackets"));
        assert!(Server::parse("broker")
            .expect_err("refused")
            .contains("host:port"));
        assert!(Server::parse("broker:0")
            .expect_err("refused")
            .contains("1..=65535"));
        assert!(Server::parse("broker:99999").is_err());
        assert!(Server::parse(":1883").is_err());
        assert!(Server::parse("[::1]")
            .expect_err("refused")
            .contains("port"));
    }

    #[test]
    fn servers_and_host_are_exclusive_and_each_entry_is_named() {
        let mut p = Problems::default();
        let list = vec!["a:1".to_owned(), "b".to_owned(), "a:1".to_owned()];
        assert!(check(Some("h".into()), None, Some(list), None, &mut p).is_none());
        let got: Vec<String> = p.into_vec().iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0].starts_with("mqtt.host: mqtt.servers and mqtt.host/port are exclusive"));
        assert!(got[1].starts_with("mqtt.servers[1]: \"b\""));
        assert!(got[2].starts_with("mqtt.servers[2]: a:1 is listed twice"));

        let mut p = Problems::default();
        assert!(check(None, None, None, Some("shuffle".into()), &mut p).is_none());
        assert!(p.into_vec()[0]
            .to_string()
            .starts_with("mqtt.servers_order: needs mqtt.servers"));

        let mut p = Problems::default();
        let (list, order) = check(None, None, None, None, &mut p).expect("default");
        assert_eq!(
            (list, order),
            (vec![server("127.0.0.1", 1883)], ServersOrder::InOrder)
        );
    }

    #[test]
    fn the_rotation_goes_round_the_list() {
        let list = vec![server("a", 1), server("b", 2), server("c", 3)];
        let mut r = Rotation::new(list.clone(), ServersOrder::InOrder);
        let mut seen = vec![r.current().clone()];
        for _ in 0..3 {
            assert!(r.advance());
            seen.push(r.current().clone());
        }
        assert_eq!(seen, [&list[..], &list[..1]].concat());
        let mut one = Rotation::new(list[..1].to_vec(), ServersOrder::InOrder);
        assert!(
            !one.advance(),
            "one server: no fail-over, the same one again"
        );
        let shuffled = Rotation::new(list.clone(), ServersOrder::Shuffle);
        let mut all: Vec<Server> = (0..3).map(|i| shuffled.servers[i].clone()).collect();
        all.sort_by(|a, b| a.host.cmp(&b.host));
        assert_eq!(all, list, "a shuffle keeps every server once");
    }
}
