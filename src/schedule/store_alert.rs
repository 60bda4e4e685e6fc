//! One alert for the fleet when the state store becomes unreachable, and one
//! when it answers again — not one per replica, not one per poll.
//!
//! The store that de-duplicates every other alert is the thing that is down,
//! so the replicas agree beforehand instead: of the replicas that were up in
//! the last fleet view this replica read, the one with the lowest id alerts.
//! Every replica reads the same table, so they pick the same one; a replica
//! that alerted "down" is the one that sends "recovered".

use jiff::Timestamp;

use crate::config::Config;
use crate::notify::{self, Event, EventKind};
use crate::state::StateStore;

/// How long a replica may stay silent and still count as up in the view.
const SILENCE: std::time::Duration = std::time::Duration::from_secs(11);

#[derive(Debug, Default)]
pub struct StoreAlert {
    /// This replica was the lowest id among the live ones at the last look.
    alerts: bool,
    /// "down" was sent and "recovered" is owed.
    sent_down: bool,
    down_since: Option<Timestamp>,
}

impl StoreAlert {
    /// After a heartbeat that reached the store: refreshes who alerts, and
    /// sends "recovered" if this replica sent "down".
    pub fn reached(&mut self, config: &Config, store: &dyn StateStore, replica: &str) {
        let now = Timestamp::now();
        if let Ok(all) = store.replicas() {
            self.alerts = all
                .iter()
                .filter(|r| r.up(now, SILENCE) || r.id == replica)
                .map(|r| r.id.as_str())
                .min()
                == Some(replica);
        }
        let since = self.down_since.take();
        if std::mem::take(&mut self.sent_down) {
            let took = since.map_or(0, |s| now.as_second() - s.as_second());
            let mut event = Event::new(
                EventKind::StateStoreRecovered,
                format!(
                    "the state store answers again after about {took}s; the replicas resume their schedules and catch up missed fires once"
                ),
            );
            event.recovery = true;
            send(config, event);
        }
    }

    /// After a heartbeat that did not reach the store.
    pub fn unreachable(&mut self, config: &Config, replica: &str, error: &str) {
        if self.down_since.is_none() {
            self.down_since = Some(Timestamp::now());
        }
        if self.alerts && !self.sent_down {
            self.sent_down = true;
            let event = Event::new(
                EventKind::StateStoreDown,
                format!("replica {replica} cannot reach the state store: no replica starts new runs, and running ones abort before their leases end, until it is back"),
            )
            .error(Some(error.to_string()))
            .next_step("check the database server the [state] url names, and the network to it");
            send(config, event);
        }
    }
}

/// Delivery retries for a while: the daemon's loop does not wait for it.
fn send(config: &Config, event: Event) {
    let config = config.clone();
    std::thread::spawn(move || {
        notify::emit(&config, None, &event);
    });
}
