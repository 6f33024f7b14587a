//! The request handler: the zone's questions answered from the current snapshot, every other
//! question forwarded.
//!
//! The answers themselves come from `crossdock-names` ([`ZoneView::answer`]); this module only
//! turns them into DNS messages with hickory's types (authoritative bit, SOA in the authority
//! section of negative answers, EDNS payload size echoed). Questions the zone does not own go to
//! a hickory `Catalog` holding one forwarding zone handler for the root, which asks the upstream
//! resolvers and relays their answer (NXDOMAIN included).
//!
//! The snapshot is swapped whole ([`ZoneSlot::set`]) when the catalog changes; a query sees one
//! consistent snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use hickory_proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{rdata, DNSClass, Name, RData, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{Catalog, MessageResponseBuilder};

use crossdock_names::zone::{Answer, QueryType, Rcode, Record, RecordData, ZoneView};

/// The zone snapshot the resolver answers from; the agent replaces it as the catalog changes.
#[derive(Debug, Default)]
pub struct ZoneSlot(RwLock<Arc<ZoneView>>);

impl ZoneSlot {
    /// A slot holding `view`.
    pub fn new(view: ZoneView) -> Self {
        Self(RwLock::new(Arc::new(view)))
    }

    /// Replaces the snapshot.
    pub fn set(&self, view: ZoneView) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(view);
    }

    /// The current snapshot.
    pub fn get(&self) -> Arc<ZoneView> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Query counters (for `/metrics`). Refused clients are answered before the handler, by
/// hickory's access control, and are not counted here.
#[derive(Debug, Default)]
pub struct DnsStats {
    /// Questions the zone answered with records or an empty NOERROR.
    pub local_answers: AtomicU64,
    /// Questions the zone answered with NXDOMAIN.
    pub local_nxdomain: AtomicU64,
    /// Questions forwarded upstream.
    pub forwarded: AtomicU64,
    /// Answers that could not be sent.
    pub send_errors: AtomicU64,
}

/// The resolver's request handler.
pub struct NamesHandler {
    zone: Arc<ZoneSlot>,
    forward: Catalog,
    stats: Arc<DnsStats>,
}

impl std::fmt::Debug for NamesHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamesHandler").finish_non_exhaustive()
    }
}

impl NamesHandler {
    /// A handler answering from `zone` and forwarding through `forward`.
    pub fn new(zone: Arc<ZoneSlot>, forward: Catalog, stats: Arc<DnsStats>) -> Self {
        Self {
            zone,
            forward,
            stats,
        }
    }

    /// The zone's answer, or `None` when the request is not a plain question the zone owns.
    fn local_answer(&self, request: &Request) -> Option<Answer> {
        if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
        {
            return None;
        }
        let info = request.request_info().ok()?;
        if info.query.query_class() != DNSClass::IN {
            return None;
        }
        let qtype = match info.query.query_type() {
            RecordType::A => QueryType::A,
            RecordType::PTR => QueryType::Ptr,
            RecordType::SOA => QueryType::Soa,
            RecordType::ANY => QueryType::Any,
            _ => QueryType::Other,
        };
        self.zone
            .get()
            .answer(&info.query.name().to_string(), qtype)
    }

    async fn send_local<R: ResponseHandler>(
        &self,
        request: &Request,
        answer: Answer,
        mut response_handle: R,
    ) -> ResponseInfo {
        let counter = match answer.rcode {
            Rcode::NoError => &self.stats.local_answers,
            Rcode::NxDomain => &self.stats.local_nxdomain,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.recursion_available = true;
        metadata.response_code = match answer.rcode {
            Rcode::NoError => ResponseCode::NoError,
            Rcode::NxDomain => ResponseCode::NXDomain,
        };
        let answers = to_hickory(&answer.answers);
        let authority = to_hickory(&answer.authority);
        let mut builder = MessageResponseBuilder::from_message_request(request);
        let edns = request.edns.as_ref().map(response_edns);
        if let Some(edns) = edns.as_ref() {
            builder.edns(edns);
        }
        let response = builder.build(metadata, answers.iter(), [], authority.iter(), []);
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, src = %request.src(), "DNS answer not sent");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for NamesHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        match self.local_answer(request) {
            Some(answer) => self.send_local(request, answer, response_handle).await,
            None => {
                self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                self.forward
                    .handle_request::<R, T>(request, response_handle)
                    .await
            }
        }
    }
}

/// The response's EDNS: version 0, the client's payload size (at least 512).
fn response_edns(req: &Edns) -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(req.max_payload().max(512));
    e.set_version(0);
    e
}

fn to_hickory(records: &[Record]) -> Vec<hickory_proto::rr::Record> {
    records.iter().filter_map(to_hickory_record).collect()
}

/// One record of the zone as hickory's; the names come from validated labels, so a failure to
/// parse one is a bug, and the record is left out rather than the answer failed.
fn to_hickory_record(r: &Record) -> Option<hickory_proto::rr::Record> {
    let name = Name::from_ascii(&r.name).ok()?;
    let data = match &r.data {
        RecordData::A(ip) => RData::A(rdata::A(*ip)),
        RecordData::Ptr(target) => RData::PTR(rdata::PTR(Name::from_ascii(target).ok()?)),
        RecordData::Soa(s) => RData::SOA(rdata::SOA::new(
            Name::from_ascii(&s.mname).ok()?,
            Name::from_ascii(&s.rname).ok()?,
            s.serial,
            s.refresh,
            s.retry,
            s.expire,
            s.minimum,
        )),
    };
    Some(hickory_proto::rr::Record::from_rdata(name, r.ttl, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossdock_names::zone::Soa;
    use std::net::Ipv4Addr;

    #[test]
    fn zone_records_convert_to_hickory_records() {
        let a = to_hickory_record(&Record {
            name: "web.crossdock.internal.".into(),
            ttl: 5,
            data: RecordData::A(Ipv4Addr::new(10, 1, 0, 2)),
        })
        .unwrap();
        assert_eq!(a.record_type(), RecordType::A);
        assert_eq!(a.ttl, 5);
        let soa = to_hickory_record(&Record {
            name: "crossdock.internal.".into(),
            ttl: 1,
            data: RecordData::Soa(Soa {
                owner: "crossdock.internal.".into(),
                mname: "ns.crossdock.internal.".into(),
                rname: "hostmaster.crossdock.internal.".into(),
                serial: 7,
                refresh: 1,
                retry: 1,
                expire: 1,
                minimum: 1,
            }),
        })
        .unwrap();
        assert_eq!(soa.record_type(), RecordType::SOA);
    }

    #[test]
    fn the_slot_swaps_whole_snapshots() {
        let slot = ZoneSlot::default();
        let before = slot.get();
        slot.set(ZoneView::default());
        assert!(!Arc::ptr_eq(&before, &slot.get()));
    }
}
