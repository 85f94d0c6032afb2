//! Prometheus counters. Every label comes from a closed enum.

use crate::event::BlockReason;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::fmt::Write as _;

/// How the client reached the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP CONNECT tunnel.
    Connect,
    /// Absolute-form HTTP/1.1 request.
    Http,
    /// Raw TCP relay for one granted host:port.
    Forward,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Connect => "connect",
            Protocol::Http => "http",
            Protocol::Forward => "forward",
        }
    }
}

impl EncodeLabelValue for Protocol {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for BlockReason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ProtocolLabels {
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct BlockLabels {
    pub protocol: Protocol,
    pub reason: BlockReason,
}

/// The proxy's counters (cheap to clone: they share storage).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Connections / requests let through to an origin.
    pub allowed: Family<ProtocolLabels, Counter>,
    /// Attempts refused, by reason.
    pub blocked: Family<BlockLabels, Counter>,
    /// Attempts that would have been refused but were let through (audit-only mode).
    pub audited: Family<BlockLabels, Counter>,
    /// Allowed attempts whose origin could not be reached or failed mid-request.
    pub upstream_errors: Family<ProtocolLabels, Counter>,
    /// HTTP connections closed because the request could not be parsed at all (answered 400, or
    /// 431 for oversized headers, by the HTTP layer) or timed out waiting for headers.
    pub malformed: Counter,
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("ironclaw_proxy");
        sub.register(
            "allowed",
            "Connections and requests let through to an origin",
            self.allowed.clone(),
        );
        sub.register(
            "blocked",
            "Connection attempts refused, by reason",
            self.blocked.clone(),
        );
        sub.register(
            "audit_would_block",
            "Attempts that audit-only mode let through but would have refused, by reason",
            self.audited.clone(),
        );
        sub.register(
            "upstream_errors",
            "Allowed attempts whose origin could not be reached",
            self.upstream_errors.clone(),
        );
        sub.register(
            "malformed_requests",
            "HTTP connections that sent an unparseable or oversized request head",
            self.malformed.clone(),
        );
    }

    pub(crate) fn allow(&self, protocol: Protocol) {
        self.allowed
            .get_or_create(&ProtocolLabels { protocol })
            .inc();
    }

    pub(crate) fn block(&self, protocol: Protocol, reason: BlockReason, blocked: bool) {
        let labels = BlockLabels { protocol, reason };
        if blocked {
            self.blocked.get_or_create(&labels).inc();
        } else {
            self.audited.get_or_create(&labels).inc();
        }
    }

    pub(crate) fn upstream_error(&self, protocol: Protocol) {
        self.upstream_errors
            .get_or_create(&ProtocolLabels { protocol })
            .inc();
    }
}
