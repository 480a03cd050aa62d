//! Server-Sent Events pass the shipped nginx event by event.

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use tinyserve::{App, Event, Request, Settings, Sse};

use crate::support::wire::{Conn, SseEvent};
use crate::support::TestServer;

use super::shipped_nginx;

#[test]
fn sse_passes_the_shipped_nginx_event_by_event() {
    const EVENTS: usize = 5;
    // The producer sends event k only after the test has read event k-1 and acked it: an nginx
    // that buffered the stream would never deliver event k-1, and the read would time out.
    let (ack_tx, ack_rx) = mpsc::channel::<()>();
    let acks = Arc::new(Mutex::new(Some(ack_rx)));
    let mut settings = Settings::default();
    settings.workers = 2;
    let app = App::new()
        .with_settings(settings)
        .get("/events", move |_: &Request| {
            let acks = acks.lock().ok().and_then(|mut a| a.take());
            Sse::new(move |events| {
                let Some(acks) = acks else {
                    return events.send(Event::data("only one stream per test"));
                };
                for k in 0..EVENTS {
                    if k > 0 && acks.recv_timeout(Duration::from_secs(60)).is_err() {
                        return Ok(()); // the test gave up
                    }
                    events.send(Event::data(format!("event {k}")).with_id(k.to_string()))?;
                }
                Ok(())
            })
        });
    let server = TestServer::start(app);
    let nginx = shipped_nginx([server.addr, server.addr], "");

    let mut http = Conn::get(nginx.addr, "/api/events");
    assert_eq!(http.status, 200, "{}", nginx.log());
    assert_eq!(http.header("Content-Type"), Some("text/event-stream"));
    for k in 0..EVENTS {
        let event = http.next_data_event().expect("another event");
        assert_eq!(
            event,
            SseEvent {
                id: Some(k.to_string()),
                data: Some(format!("event {k}")),
                ..SseEvent::default()
            }
        );
        if k + 1 < EVENTS {
            ack_tx.send(()).expect("the producer waits for the ack");
        }
    }
    assert!(http.next_data_event().is_none(), "the stream ends");
}
