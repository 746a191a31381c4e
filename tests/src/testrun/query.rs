//! DNS queries built by hand, so that tests control every byte.

use dnsxdp_common::{QCLASS_IN, QTYPE_OPT};

/// Wire format of a dotted name, case kept; a trailing dot is optional.
pub fn wire_name(dotted: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in dotted
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// EDNS part of a query.
#[derive(Clone, Debug)]
pub struct Edns {
    pub udp_size: u16,
    pub version: u8,
    pub dnssec_ok: bool,
    pub options: Vec<(u16, Vec<u8>)>,
}

impl Edns {
    pub fn new(udp_size: u16) -> Self {
        Self {
            udp_size,
            version: 0,
            dnssec_ok: false,
            options: Vec::new(),
        }
    }

    pub fn option(mut self, code: u16, data: &[u8]) -> Self {
        self.options.push((code, data.to_vec()));
        self
    }
}

/// A DNS query message, built by hand so tests control every byte.
#[derive(Clone, Debug)]
pub struct Query {
    pub id: u16,
    /// Header bytes 2 and 3.
    pub flags: [u8; 2],
    pub name: Vec<u8>,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
}

pub const FLAG_RD: u8 = 0x01;
pub const FLAG_CD: u8 = 0x10;

impl Query {
    /// A recursive query (RD set) for `name` in class IN.
    pub fn new(name: &str, qtype: u16) -> Self {
        Self {
            id: 0xbeef,
            flags: [FLAG_RD, 0],
            name: wire_name(name),
            qtype,
            qclass: QCLASS_IN,
            edns: None,
        }
    }

    pub fn edns(mut self, edns: Edns) -> Self {
        self.edns = Some(edns);
        self
    }

    pub fn to_wire(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(64);
        m.extend_from_slice(&self.id.to_be_bytes());
        m.extend_from_slice(&self.flags);
        let arcount = self.edns.is_some() as u16;
        for count in [1u16, 0, 0, arcount] {
            m.extend_from_slice(&count.to_be_bytes());
        }
        m.extend_from_slice(&self.name);
        m.extend_from_slice(&self.qtype.to_be_bytes());
        m.extend_from_slice(&self.qclass.to_be_bytes());
        if let Some(e) = &self.edns {
            let rdata: Vec<u8> = e
                .options
                .iter()
                .flat_map(|(code, data)| {
                    let mut o = code.to_be_bytes().to_vec();
                    o.extend_from_slice(&(data.len() as u16).to_be_bytes());
                    o.extend_from_slice(data);
                    o
                })
                .collect();
            m.push(0);
            m.extend_from_slice(&QTYPE_OPT.to_be_bytes());
            m.extend_from_slice(&e.udp_size.to_be_bytes());
            m.extend_from_slice(&[0, e.version, if e.dnssec_ok { 0x80 } else { 0 }, 0]);
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(&rdata);
        }
        m
    }
}
