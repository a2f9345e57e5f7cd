//! A minimal MaxMind DB writer (format 2.0, <https://maxmind.github.io/MaxMind-DB/>): enough for
//! the small databases of [`super::test_db`].
//!
//! The file is a binary search tree over the bits of an IPv6 address (IPv4 networks live under
//! `::/96`, where readers look for them), 16 zero bytes, a data section holding one encoded value
//! per inserted network, and the metadata after a marker. Only the value types those databases use
//! are written; what the tree does with overlapping networks follows MaxMind's own writer: the
//! network inserted last wins where they overlap.

use bridgemesh_proto::cidr::Cidr;
use std::net::IpAddr;

/// A value of the MaxMind DB data section.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    String(String),
    Double(f64),
    Uint16(u16),
    Uint32(u32),
    Uint64(u64),
    Map(Vec<(String, Value)>),
    Array(Vec<Value>),
}

impl Value {
    pub(crate) fn map<const N: usize>(entries: [(&str, Value); N]) -> Self {
        Self::Map(
            entries
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
        )
    }

    pub(crate) fn string(text: &str) -> Self {
        Self::String(text.to_owned())
    }
}

/// What the metadata says about the database besides the tree's shape.
pub(crate) struct Description<'a> {
    pub database_type: &'a str,
    /// English description.
    pub description: &'a str,
    pub languages: &'a [&'a str],
    pub build_epoch_s: u64,
}

/// A search-tree record while building: an empty branch, another node, or data.
#[derive(Debug, Clone, Copy)]
enum Record {
    Empty,
    Node(usize),
    /// Offset in the data section.
    Data(usize),
}

pub(crate) struct Writer {
    /// Arena of nodes, root first; a node is its two records (bit 0, bit 1). Nodes cut off by a
    /// later, larger network stay here but are not written.
    nodes: Vec<[Record; 2]>,
    data: Vec<u8>,
}

const METADATA_MARKER: &[u8] = b"\xAB\xCD\xEFMaxMind.com";
const DATA_SECTION_SEPARATOR: [u8; 16] = [0; 16];

impl Writer {
    pub(crate) fn new() -> Self {
        Self {
            nodes: vec![[Record::Empty; 2]],
            data: Vec::new(),
        }
    }

    /// Maps `network` to `value`, replacing what earlier insertions said about its addresses.
    pub(crate) fn insert(&mut self, network: Cidr, value: &Value) {
        let offset = self.data.len();
        encode(&mut self.data, value);
        // IPv4 a.b.c.d/n is ::a.b.c.d/(96+n).
        let (bits, depth) = match network.network() {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 96 + usize::from(network.prefix_len())),
            IpAddr::V6(v6) => (u128::from(v6), usize::from(network.prefix_len())),
        };
        if depth == 0 {
            // ::/0 covers both halves; the root itself cannot hold data.
            self.set(0, 1, Record::Data(offset));
            self.set(1 << 127, 1, Record::Data(offset));
        } else {
            self.set(bits, depth, Record::Data(offset));
        }
    }

    /// Points the record for the first `depth` (≥ 1) bits of `bits` at `record`.
    fn set(&mut self, bits: u128, depth: usize, record: Record) {
        let bit = |i: usize| ((bits >> (127 - i)) & 1) as usize;
        let mut node = 0;
        for i in 0..depth - 1 {
            node = match self.nodes[node][bit(i)] {
                Record::Node(next) => next,
                // A larger network (or nothing) covers this branch: split it into a node whose
                // both halves say the same, then go on narrowing.
                covering @ (Record::Empty | Record::Data(_)) => {
                    self.nodes.push([covering; 2]);
                    let next = self.nodes.len() - 1;
                    self.nodes[node][bit(i)] = Record::Node(next);
                    next
                }
            };
        }
        self.nodes[node][bit(depth - 1)] = record;
    }

    /// The database file.
    pub(crate) fn finish(self, description: &Description<'_>) -> Vec<u8> {
        // Number the nodes reachable from the root in breadth-first order (the root must be 0).
        let mut number = vec![None; self.nodes.len()];
        let mut order = vec![0];
        number[0] = Some(0u32);
        let mut next = 0;
        while next < order.len() {
            for record in self.nodes[order[next]] {
                if let Record::Node(child) = record
                    && number[child].is_none()
                {
                    number[child] = Some(u32::try_from(order.len()).expect("fewer than 2^32 nodes"));
                    order.push(child);
                }
            }
            next += 1;
        }
        let node_count = order.len() as u64;
        // Data records point past the tree and the separator: node_count + 16 + offset.
        let largest = node_count + DATA_SECTION_SEPARATOR.len() as u64 + self.data.len() as u64;
        let record_size_bits: u16 = if largest < 1 << 24 { 24 } else { 32 };
        assert!(
            largest < 1 << 32,
            "a MaxMind DB addresses at most 4 GiB of tree and data"
        );
        let value_of = |record: Record| -> u64 {
            match record {
                Record::Empty => node_count,
                Record::Node(child) => u64::from(number[child].expect("reachable")),
                Record::Data(offset) => node_count + DATA_SECTION_SEPARATOR.len() as u64 + offset as u64,
            }
        };
        let record_bytes = usize::from(record_size_bits / 8);
        let mut out = Vec::with_capacity(order.len() * 2 * record_bytes + 16 + self.data.len() + 256);
        for &node in &order {
            for record in self.nodes[node] {
                out.extend_from_slice(&value_of(record).to_be_bytes()[8 - record_bytes..]);
            }
        }
        out.extend_from_slice(&DATA_SECTION_SEPARATOR);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(METADATA_MARKER);
        let metadata = Value::map([
            ("binary_format_major_version", Value::Uint16(2)),
            ("binary_format_minor_version", Value::Uint16(0)),
            ("build_epoch", Value::Uint64(description.build_epoch_s)),
            ("database_type", Value::string(description.database_type)),
            (
                "description",
                Value::map([("en", Value::string(description.description))]),
            ),
            ("ip_version", Value::Uint16(6)),
            (
                "languages",
                Value::Array(description.languages.iter().map(|l| Value::string(l)).collect()),
            ),
            ("node_count", Value::Uint32(order.len() as u32)),
            ("record_size", Value::Uint16(record_size_bits)),
        ]);
        encode(&mut out, &metadata);
        out
    }
}

// Type numbers of the data section; 8 and above are "extended" and take a second byte.
const TYPE_STRING: u8 = 2;
const TYPE_DOUBLE: u8 = 3;
const TYPE_UINT16: u8 = 5;
const TYPE_UINT32: u8 = 6;
const TYPE_MAP: u8 = 7;
const TYPE_UINT64: u8 = 9;
const TYPE_ARRAY: u8 = 11;

fn encode(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(text) => {
            control(out, TYPE_STRING, text.len());
            out.extend_from_slice(text.as_bytes());
        }
        Value::Double(number) => {
            control(out, TYPE_DOUBLE, 8);
            out.extend_from_slice(&number.to_be_bytes());
        }
        Value::Uint16(number) => unsigned(out, TYPE_UINT16, u64::from(*number)),
        Value::Uint32(number) => unsigned(out, TYPE_UINT32, u64::from(*number)),
        Value::Uint64(number) => unsigned(out, TYPE_UINT64, *number),
        Value::Map(entries) => {
            control(out, TYPE_MAP, entries.len());
            for (key, value) in entries {
                encode(out, &Value::String(key.clone()));
                encode(out, value);
            }
        }
        Value::Array(items) => {
            control(out, TYPE_ARRAY, items.len());
            for item in items {
                encode(out, item);
            }
        }
    }
}

/// Unsigned integers are written big-endian without leading zero bytes (zero is no bytes at all).
fn unsigned(out: &mut Vec<u8>, type_number: u8, number: u64) {
    let bytes = number.to_be_bytes();
    let skip = (number.leading_zeros() / 8) as usize;
    control(out, type_number, bytes.len() - skip);
    out.extend_from_slice(&bytes[skip..]);
}

/// The control byte (type in the top 3 bits, size in the low 5), the extended type byte, then the
/// size's extra bytes for sizes of 29 and more.
fn control(out: &mut Vec<u8>, type_number: u8, size: usize) {
    let (size_code, extra): (u8, Vec<u8>) = match size {
        0..29 => (size as u8, Vec::new()),
        29..285 => (29, vec![(size - 29) as u8]),
        285..65_821 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
        _ => {
            let rest = u32::try_from(size - 65_821)
                .ok()
                .filter(|rest| *rest < 1 << 24)
                .expect("a MaxMind DB value holds fewer than 16 843 037 bytes or entries");
            (31, rest.to_be_bytes()[1..].to_vec())
        }
    };
    if type_number <= 7 {
        out.push(type_number << 5 | size_code);
    } else {
        out.push(size_code);
        out.push(type_number - 7);
    }
    out.extend_from_slice(&extra);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, value);
        out
    }

    /// Encodings worked out by hand from the specification's examples.
    #[test]
    fn values_are_encoded_as_the_specification_shows() {
        assert_eq!(bytes_of(&Value::string("")), [0x40]);
        assert_eq!(bytes_of(&Value::string("en")), [0x42, b'e', b'n']);
        assert_eq!(bytes_of(&Value::Uint16(0)), [0xa0]);
        assert_eq!(bytes_of(&Value::Uint16(500)), [0xa2, 0x01, 0xf4]);
        assert_eq!(bytes_of(&Value::Uint32(255)), [0xc1, 0xff]);
        // Extended types: control byte with type 0, then type - 7.
        assert_eq!(bytes_of(&Value::Uint64(1)), [0x01, 0x02, 0x01]);
        assert_eq!(bytes_of(&Value::Array(vec![])), [0x00, 0x04]);
        assert_eq!(
            bytes_of(&Value::Double(1.0)),
            [0x68, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes_of(&Value::map([("a", Value::Uint16(1))])),
            [0xe1, 0x41, b'a', 0xa1, 0x01]
        );
    }

    #[test]
    fn long_sizes_take_extra_bytes() {
        for (length, head) in [
            (28, vec![0x5c]),
            (29, vec![0x5d, 0x00]),
            (284, vec![0x5d, 0xff]),
            (285, vec![0x5e, 0x00, 0x00]),
            (65_820, vec![0x5e, 0xff, 0xff]),
            (65_821, vec![0x5f, 0x00, 0x00, 0x00]),
        ] {
            let encoded = bytes_of(&Value::String("x".repeat(length)));
            assert_eq!(encoded[..head.len()], head[..], "length {length}");
            assert_eq!(encoded.len(), head.len() + length);
        }
        // The extended type byte comes before the size's extra bytes.
        let array = bytes_of(&Value::Array(vec![Value::Uint16(0); 30]));
        assert_eq!(array[..3], [0x1d, 0x04, 0x01]);
    }

    /// Reads back what was written with the maxminddb reader, including its full verification of
    /// tree, separator, data and metadata.
    fn read(bytes: Vec<u8>) -> maxminddb::Reader<Vec<u8>> {
        let reader = maxminddb::Reader::from_source(bytes).expect("opens");
        reader.verify().expect("verifies");
        reader
    }

    fn lookup(reader: &maxminddb::Reader<Vec<u8>>, ip: &str) -> Option<String> {
        reader
            .lookup(ip.parse().unwrap())
            .unwrap()
            .decode::<String>()
            .unwrap()
    }

    fn description() -> Description<'static> {
        Description {
            database_type: "bridgemesh-Writer-Test",
            description: "writer test",
            languages: &["en"],
            build_epoch_s: 1_700_000_000,
        }
    }

    #[test]
    fn networks_are_found_and_the_last_insert_wins_where_they_overlap() {
        let mut writer = Writer::new();
        let net = |text: &str| text.parse::<Cidr>().unwrap();
        writer.insert(net("10.0.0.0/8"), &Value::string("ten"));
        writer.insert(net("10.1.0.0/16"), &Value::string("ten-one"));
        writer.insert(net("2001:db8::/32"), &Value::string("doc"));
        writer.insert(net("192.0.2.1"), &Value::string("host"));
        // Replaces a part of 10.0.0.0/8 and the whole of 10.1.0.0/16.
        writer.insert(net("10.0.0.0/15"), &Value::string("ten-low"));
        let reader = read(writer.finish(&description()));
        let metadata = reader.metadata();
        assert_eq!(metadata.database_type, "bridgemesh-Writer-Test");
        assert_eq!(metadata.ip_version, 6);
        assert_eq!(metadata.record_size, 24);
        assert_eq!(metadata.build_epoch, 1_700_000_000);
        assert_eq!(metadata.languages, ["en"]);
        for (ip, expected) in [
            ("10.0.0.1", Some("ten-low")),
            ("10.1.2.3", Some("ten-low")),
            ("10.2.0.0", Some("ten")),
            ("10.255.255.255", Some("ten")),
            ("11.0.0.0", None),
            ("9.255.255.255", None),
            ("192.0.2.1", Some("host")),
            ("192.0.2.0", None),
            ("192.0.2.2", None),
            ("2001:db8:1::1", Some("doc")),
            ("2001:db9::", None),
            ("::1", None),
            ("::10.0.0.1", Some("ten-low")),
        ] {
            assert_eq!(lookup(&reader, ip).as_deref(), expected, "{ip}");
        }
        // What is left of 10.0.0.0/8 beside 10.0.0.0/15 is split no finer than it must be.
        let found = reader.lookup("10.3.4.5".parse().unwrap()).unwrap();
        assert_eq!(found.network().unwrap().to_string(), "10.2.0.0/15");
        let found = reader.lookup("10.200.4.5".parse().unwrap()).unwrap();
        assert_eq!(found.network().unwrap().to_string(), "10.128.0.0/9");
    }

    #[test]
    fn an_empty_database_and_the_whole_address_space() {
        let reader = read(Writer::new().finish(&description()));
        assert_eq!(reader.metadata().node_count, 1);
        assert_eq!(lookup(&reader, "1.2.3.4"), None);
        assert_eq!(lookup(&reader, "::1"), None);

        let mut writer = Writer::new();
        writer.insert("::/0".parse().unwrap(), &Value::string("all"));
        writer.insert("0.0.0.0/0".parse().unwrap(), &Value::string("v4"));
        let reader = read(writer.finish(&description()));
        assert_eq!(lookup(&reader, "8.8.8.8").as_deref(), Some("v4"));
        assert_eq!(lookup(&reader, "2001:db8::1").as_deref(), Some("all"));
        assert_eq!(lookup(&reader, "ffff::1").as_deref(), Some("all"));
    }

    #[test]
    fn a_large_database_switches_to_32_bit_records() {
        let mut writer = Writer::new();
        // 2^24 bytes of data take one value of 16 MiB plus a few small ones after it.
        writer.insert("10.0.0.0/8".parse().unwrap(), &Value::String("x".repeat(1 << 24)));
        writer.insert("11.0.0.0/8".parse().unwrap(), &Value::string("eleven"));
        let reader = read(writer.finish(&description()));
        assert_eq!(reader.metadata().record_size, 32);
        assert_eq!(lookup(&reader, "11.1.1.1").as_deref(), Some("eleven"));
        // (Not decoded: the reader caps what one decode may materialize at 2 MiB.)
        assert!(reader.lookup("10.1.1.1".parse().unwrap()).unwrap().has_data());
        assert_eq!(lookup(&reader, "12.1.1.1"), None);
    }
}
