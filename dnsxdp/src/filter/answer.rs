//! The answer a blocked name gets, made as an upstream's would be, so that both caches keep
//! and serve it like any other.

use hickory_proto::{
    op::{Message, MessageType, Query, ResponseCode},
    rr::{
        RData, Record, RecordType,
        rdata::{A, AAAA},
    },
};

use super::settings::BlockAnswer;
use crate::dns::answer::own_soa;

/// The response to `q` for a blocked name, its records living `ttl` seconds. Negative ones
/// carry a SOA owned by the name itself, which gives their TTL to the caches and to clients
/// (RFC 2308).
pub fn message(q: &Query, how: &BlockAnswer, ttl: u32) -> Message {
    let mut m = Message::new();
    m.set_message_type(MessageType::Response)
        .set_recursion_desired(true)
        .set_recursion_available(true);
    m.add_query(q.clone());
    let owner = q.name().clone();
    let record = |data| Record::from_rdata(owner.clone(), ttl, data);
    let addresses: Vec<RData> = match (how, q.query_type()) {
        (BlockAnswer::Refused, _) => {
            m.set_response_code(ResponseCode::Refused);
            return m;
        }
        (BlockAnswer::NxDomain, _) => {
            m.set_response_code(ResponseCode::NXDomain);
            Vec::new()
        }
        (BlockAnswer::Null, RecordType::A) => vec![RData::A(A::new(0, 0, 0, 0))],
        (BlockAnswer::Null, RecordType::AAAA) => {
            vec![RData::AAAA(AAAA::from(std::net::Ipv6Addr::UNSPECIFIED))]
        }
        (BlockAnswer::Addresses(v4, _), RecordType::A) => {
            v4.iter().map(|&a| RData::A(A::from(a))).collect()
        }
        (BlockAnswer::Addresses(_, v6), RecordType::AAAA) => {
            v6.iter().map(|&a| RData::AAAA(AAAA::from(a))).collect()
        }
        _ => Vec::new(),
    };
    if addresses.is_empty() {
        m.add_name_server(record(RData::SOA(own_soa(ttl))));
    }
    for data in addresses {
        m.add_answer(record(data));
    }
    m
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::rr::Name;

    use super::*;

    fn ask(how: &BlockAnswer, qtype: RecordType) -> Message {
        let q = Query::query(Name::from_ascii("ads.example.").unwrap(), qtype);
        message(&q, how, 60)
    }

    #[test]
    fn each_kind_of_block_answer() {
        let null_a = ask(&BlockAnswer::Null, RecordType::A);
        assert_eq!(null_a.answers()[0].data(), &RData::A(A::new(0, 0, 0, 0)));
        assert_eq!(null_a.answers()[0].ttl(), 60);
        let null_mx = ask(&BlockAnswer::Null, RecordType::MX);
        assert_eq!(null_mx.response_code(), ResponseCode::NoError);
        assert!(null_mx.answers().is_empty());
        assert_eq!(null_mx.name_servers()[0].record_type(), RecordType::SOA);
        let nx = ask(&BlockAnswer::NxDomain, RecordType::A);
        assert_eq!(nx.response_code(), ResponseCode::NXDomain);
        assert_eq!(nx.name_servers()[0].name().to_ascii(), "ads.example.");
        let refused = ask(&BlockAnswer::Refused, RecordType::A);
        assert_eq!(refused.response_code(), ResponseCode::Refused);
        assert!(refused.name_servers().is_empty());
        let own = BlockAnswer::Addresses(vec![Ipv4Addr::new(198, 18, 0, 7)], Vec::new());
        let a = ask(&own, RecordType::A);
        assert_eq!(a.answers()[0].data(), &RData::A(A::new(198, 18, 0, 7)));
        assert!(ask(&own, RecordType::AAAA).answers().is_empty());
    }
}
