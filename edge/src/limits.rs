//! Limits on greedy and slow clients, as plain functions over explicit time: the per-identity
//! token bucket, the request id, and when a connection has stalled for too long.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use warp::http::{HeaderValue, StatusCode};

use crate::auth::Role;
use crate::problem::Problem;

/// Whom a request counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// The subject of a valid token.
    Caller(Role, String),
    /// The peer address when there is no valid token; IPv6 by its /64, which one host
    /// usually holds whole.
    Peer(IpAddr),
}

impl RateKey {
    pub fn peer(ip: IpAddr) -> RateKey {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                RateKey::Peer(IpAddr::V6(bits.into()))
            }
            v4 => RateKey::Peer(v4),
        }
    }
}

/// One identity's bucket: up to `burst` tokens, refilled at `rate` per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn full(burst: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(burst),
            at: now,
        }
    }

    fn refill(&mut self, rate: u32, burst: u32, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(burst));
        self.at = now;
    }

    /// Takes one token, or says how long until one is there.
    pub fn take(&mut self, rate: u32, burst: u32, now: Instant) -> Result<(), Duration> {
        self.refill(rate, burst, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / f64::from(rate),
            ))
        }
    }

    /// Full again by `now`: forgetting it changes nothing.
    fn is_full(&self, rate: u32, burst: u32, now: Instant) -> bool {
        let mut b = *self;
        b.refill(rate, burst, now);
        b.tokens >= f64::from(burst)
    }
}

/// Token buckets per identity, shared by all connections.
pub struct RateLimiter {
    rate: u32,
    burst: u32,
    buckets: Mutex<Buckets>,
}

struct Buckets {
    map: HashMap<RateKey, Bucket>,
    /// Size at which full buckets are dropped; doubles with what stays, so pruning is
    /// amortized and the map never holds many idle identities.
    prune_at: usize,
}

impl RateLimiter {
    /// `rate` per second sustained, `burst` at once; both at least 1.
    pub fn new(rate: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            rate: rate.max(1),
            burst: burst.max(1),
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                prune_at: 1024,
            }),
        }
    }

    /// Counts one request of `key`; `Err` with the wait when it is over its limit.
    pub fn check(&self, key: &RateKey, now: Instant) -> Result<(), Duration> {
        let (rate, burst) = (self.rate, self.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.map.len() >= buckets.prune_at {
            buckets.map.retain(|_, b| !b.is_full(rate, burst, now));
            buckets.prune_at = (buckets.map.len() * 2).max(1024);
        }
        match buckets.map.get_mut(key) {
            Some(bucket) => bucket.take(rate, burst, now),
            None => {
                let mut bucket = Bucket::full(burst, now);
                let taken = bucket.take(rate, burst, now);
                buckets.map.insert(key.clone(), bucket);
                taken
            }
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.lock().unwrap().map.len()
    }
}

/// `Retry-After` in whole seconds, at least 1 (rounded up: a client that waits that long gets in).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// 429 with `Retry-After`.
pub fn too_many_requests(wait: Duration) -> Problem {
    let secs = retry_after_secs(wait);
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too-many-requests",
        format!("too many requests from this caller; retry in {secs} s"),
    )
    .with_header(warp::http::header::RETRY_AFTER, HeaderValue::from(secs))
}

/// The request's id: the client's `X-Request-Id` if it is 1–128 visible ASCII characters,
/// else a fresh UUID.
pub fn request_id(given: Option<&HeaderValue>) -> HeaderValue {
    match given {
        Some(v)
            if (1..=128).contains(&v.len()) && v.as_bytes().iter().all(u8::is_ascii_graphic) =>
        {
            v.clone()
        }
        _ => HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
            .expect("a UUID is a valid header value"),
    }
}

/// How long a connection may wait for its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A request's headers, from its first byte (the first request: from the connection's start).
    pub header: Duration,
    /// A keep-alive connection between requests, and a request whose body or answer makes no
    /// progress.
    pub idle: Duration,
}

/// What a connection is doing, as far as its deadline goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnState {
    /// Requests handed to the API and not answered yet.
    pub in_flight: u32,
    /// Requests answered on this connection.
    pub served: u64,
    /// When the connection started, or when its last answer was ready.
    pub since: Instant,
    /// First byte of the next request, read while idle.
    pub reading_since: Option<Instant>,
    /// Last byte read or written.
    pub last_io: Instant,
}

impl ConnState {
    pub fn new(now: Instant) -> ConnState {
        ConnState {
            in_flight: 0,
            served: 0,
            since: now,
            reading_since: None,
            last_io: now,
        }
    }

    /// When the connection is to be closed unless something happens first.
    pub fn deadline(&self, t: Timeouts) -> Instant {
        if self.in_flight > 0 {
            self.last_io + t.idle
        } else if self.served == 0 {
            self.since + t.header
        } else if let Some(first_byte) = self.reading_since {
            first_byte + t.header
        } else {
            self.since + t.idle
        }
    }

    /// Bytes arrived (`read`) or left.
    pub fn io(&mut self, now: Instant, read: bool) {
        self.last_io = now;
        if read && self.in_flight == 0 && self.reading_since.is_none() {
            self.reading_since = Some(now);
        }
    }

    /// A request's headers are complete and the API has it.
    pub fn begin(&mut self) {
        self.in_flight += 1;
        self.reading_since = None;
    }

    /// Its answer is written (the last byte of its body is out).
    pub fn end(&mut self, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.served += 1;
        self.since = now;
        self.reading_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::full(3, t0);
        for _ in 0..3 {
            assert_eq!(b.take(2, 3, t0), Ok(()));
        }
        let wait = b.take(2, 3, t0).unwrap_err();
        assert_eq!(wait, secs(0.5), "one token every half second");
        assert_eq!(retry_after_secs(wait), 1);
        assert_eq!(b.take(2, 3, t0 + secs(0.5)), Ok(()));
        assert!(b.take(2, 3, t0 + secs(0.5)).is_err());
        // Refills never exceed the burst.
        let later = t0 + secs(100.0);
        for _ in 0..3 {
            assert_eq!(b.take(2, 3, later), Ok(()));
        }
        assert!(b.take(2, 3, later).is_err());
    }

    #[test]
    fn identities_have_their_own_buckets() {
        let limiter = RateLimiter::new(1, 2);
        let now = Instant::now();
        let ada = RateKey::Caller(Role::Customer, "OMS-Cust-001".into());
        let ops = RateKey::Caller(Role::Operator, "OMS-Cust-001".into());
        assert!(limiter.check(&ada, now).is_ok());
        assert!(limiter.check(&ada, now).is_ok());
        assert_eq!(limiter.check(&ada, now), Err(secs(1.0)));
        assert!(limiter.check(&ops, now).is_ok(), "same name, another role");
        let peer = RateKey::peer("127.0.0.1".parse().unwrap());
        assert!(limiter.check(&peer, now).is_ok());
    }

    #[test]
    fn ipv6_peers_count_by_their_64_and_mapped_v4_as_v4() {
        let a = RateKey::peer("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = RateKey::peer("2001:db8:1:2:bbbb::9".parse().unwrap());
        let c = RateKey::peer("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            RateKey::peer("::ffff:10.0.0.1".parse().unwrap()),
            RateKey::peer("10.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn idle_identities_are_forgotten() {
        let limiter = RateLimiter::new(10, 10);
        let t0 = Instant::now();
        for i in 0..1024u32 {
            limiter
                .check(&RateKey::peer(IpAddr::from(i.to_be_bytes())), t0)
                .unwrap();
        }
        assert_eq!(limiter.tracked(), 1024);
        // A second later all are full again: the next check prunes them.
        limiter
            .check(&RateKey::peer("10.9.9.9".parse().unwrap()), t0 + secs(1.0))
            .unwrap();
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn a_429_says_when_to_retry() {
        let p = too_many_requests(secs(1.2));
        assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(p.headers[0].0, warp::http::header::RETRY_AFTER);
        assert_eq!(p.headers[0].1, "2");
        assert_eq!(retry_after_secs(secs(0.01)), 1);
    }

    #[test]
    fn request_ids_are_kept_when_sane_and_made_otherwise() {
        let keep = HeaderValue::from_static("abc-123_!~");
        assert_eq!(request_id(Some(&keep)), keep);
        let long = HeaderValue::from_str(&"x".repeat(129)).unwrap();
        let with_space = HeaderValue::from_static("a b");
        let empty = HeaderValue::from_static("");
        for bad in [Some(&long), Some(&with_space), Some(&empty), None] {
            let id = request_id(bad);
            assert!(
                uuid::Uuid::parse_str(id.to_str().unwrap()).is_ok(),
                "{id:?}"
            );
        }
        assert_ne!(request_id(None), request_id(None));
    }

    #[test]
    fn connection_deadlines_follow_what_it_does() {
        let t = Timeouts {
            header: secs(10.0),
            idle: secs(60.0),
        };
        let t0 = Instant::now();
        let mut c = ConnState::new(t0);
        // The first request's headers are due 10 s after the connection opened, bytes or not.
        assert_eq!(c.deadline(t), t0 + secs(10.0));
        c.io(t0 + secs(3.0), true);
        assert_eq!(c.deadline(t), t0 + secs(10.0));
        // Handling it: the deadline moves with every byte.
        c.begin();
        c.io(t0 + secs(4.0), true);
        assert_eq!(c.deadline(t), t0 + secs(64.0));
        c.end(t0 + secs(5.0));
        // Idle keep-alive: 60 s.
        assert_eq!(c.deadline(t), t0 + secs(65.0));
        c.io(t0 + secs(5.0), false);
        assert_eq!(
            c.deadline(t),
            t0 + secs(65.0),
            "writing the answer is not a new request"
        );
        // The next request's first byte starts its header clock.
        c.io(t0 + secs(30.0), true);
        assert_eq!(c.deadline(t), t0 + secs(40.0));
        c.io(t0 + secs(35.0), true);
        assert_eq!(
            c.deadline(t),
            t0 + secs(40.0),
            "trickling does not extend it"
        );
        c.begin();
        assert_eq!(c.deadline(t), t0 + secs(95.0));
    }
}
