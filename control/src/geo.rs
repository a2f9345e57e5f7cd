//! Where a client is: a MaxMind DB lookup of its address, and great-circle distances.
//!
//! Placement uses these to send a participant to the nearest region. Nothing here is required: a
//! control node without a database locates nobody, and placement falls back to its other rules.
//!
//! # Layout
//! - [`GeoIp`]: a City or Country database (GeoIP2, GeoLite2, or a compatible one), read into memory.
//! - [`ClientLocation`]: what a lookup found; any part may be missing.
//! - [`distance_km`]: the haversine distance between two points.
//! - [`test_db`]: writes small City/Country databases for tests and for trying regions locally.

pub mod test_db;

mod mmdb_writer;

use bridgemesh_proto::bridge_session::GeoPoint;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::Path;

/// Mean Earth radius (IUGG), the usual choice for haversine distances; the error against the
/// ellipsoid is under 0.5 %, far below what GeoIP coordinates are worth.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Where a client is, as far as the database knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientLocation {
    /// `None` in Country databases, and where the database has no valid coordinates.
    pub point: Option<GeoPoint>,
    /// ISO 3166-1 alpha-2 code, e.g. `DE`.
    pub country: Option<String>,
    /// MaxMind's continent code: `AF`, `AN`, `AS`, `EU`, `NA`, `OC` or `SA`.
    pub continent: Option<String>,
    /// English city name.
    pub city: Option<String>,
}

/// A MaxMind DB with City or Country records, held in memory.
pub struct GeoIp {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("database_type", &self.database_type())
            .field("build_epoch_s", &self.build_epoch_s())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GeoIpError {
    #[error("cannot read the GeoIP database {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{origin} is not a MaxMind DB (.mmdb) file: {source}")]
    NotMaxMindDb {
        /// The file's path, or `in-memory database`.
        origin: String,
        source: maxminddb::MaxMindDbError,
    },
    #[error(
        "{origin} is a `{database_type}` database, which has no locations; bridgemesh needs a City or \
         Country database such as GeoLite2-City or GeoIP2-Country"
    )]
    NotALocationDatabase { origin: String, database_type: String },
}

/// Why a lookup found nothing usable, for tools that want to say so; [`GeoIp::locate`] folds all of
/// these into `None`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// E.g. an IPv6 address in an IPv4-only database.
    #[error("the database cannot look this address up: {0}")]
    Lookup(maxminddb::MaxMindDbError),
    #[error("the database's record for this address is malformed: {0}")]
    Record(maxminddb::MaxMindDbError),
}

impl GeoIp {
    /// Reads the database at `path` into memory. A City database is about 60 MB, a Country one 10 MB.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GeoIpError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| GeoIpError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes_named(bytes, path.display().to_string())
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GeoIpError> {
        Self::from_bytes_named(bytes, "in-memory database".to_owned())
    }

    fn from_bytes_named(bytes: Vec<u8>, origin: String) -> Result<Self, GeoIpError> {
        let reader = maxminddb::Reader::from_source(bytes).map_err(|source| GeoIpError::NotMaxMindDb {
            origin: origin.clone(),
            source,
        })?;
        // ASN, ISP, Domain or Anonymous-IP databases open fine and then locate nobody; say so now
        // instead of leaving the operator to wonder why placement ignores geography. The names are
        // MaxMind's (GeoIP2-City, GeoLite2-Country, GeoIP2-Enterprise) and those of compatible
        // vendors (DBIP-City-Lite, ...).
        let database_type = &reader.metadata().database_type;
        if !["City", "Country", "Enterprise"]
            .iter()
            .any(|kind| database_type.contains(kind))
        {
            return Err(GeoIpError::NotALocationDatabase {
                origin,
                database_type: database_type.clone(),
            });
        }
        Ok(Self { reader })
    }

    /// The metadata's database type, e.g. `GeoLite2-City`.
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// When the database was built, in seconds since the Unix epoch: GeoIP data ages (MaxMind
    /// updates it twice a week), so operators want to see it.
    pub fn build_epoch_s(&self) -> u64 {
        self.reader.metadata().build_epoch
    }

    /// Where `ip` is, or `None` when the database does not know or its record is unusable.
    pub fn locate(&self, ip: IpAddr) -> Option<ClientLocation> {
        self.try_locate(ip).ok().flatten()
    }

    /// Like [`locate`](Self::locate), but says why a lookup failed. `Ok(None)`: the address is not
    /// in the database, or its record names no place.
    pub fn try_locate(&self, ip: IpAddr) -> Result<Option<ClientLocation>, LookupError> {
        // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; the IPv4 part of the tree is
        // under ::a.b.c.d, and only MaxMind's own databases alias the mapped range to it.
        let ip = ip.to_canonical();
        let found = self.reader.lookup(ip).map_err(LookupError::Lookup)?;
        let Some(record) = found.decode::<LocationRecord>().map_err(LookupError::Record)? else {
            return Ok(None);
        };
        Ok(record.into_location())
    }
}

/// The fields of a City or Country record that placement uses; the rest of the record is skipped
/// without being decoded, so a malformed field placement does not need cannot spoil a lookup.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LocationRecord {
    city: NamedRecord,
    continent: ContinentRecord,
    country: CountryRecord,
    registered_country: CountryRecord,
    location: PointRecord,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NamedRecord {
    names: NamesRecord,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NamesRecord {
    en: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ContinentRecord {
    code: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CountryRecord {
    iso_code: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PointRecord {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

impl LocationRecord {
    fn into_location(self) -> Option<ClientLocation> {
        let point = match (self.location.latitude, self.location.longitude) {
            (Some(latitude), Some(longitude)) => Some(GeoPoint { latitude, longitude }),
            _ => None,
        }
        .filter(GeoPoint::is_valid);
        // `country` is where MaxMind thinks the address is used; `registered_country` where its
        // block is registered. The second is the next best guess when the first is missing (MaxMind
        // leaves it out for e.g. some satellite and anycast networks).
        let country = self.country.iso_code.or(self.registered_country.iso_code);
        let location = ClientLocation {
            point,
            country,
            continent: self.continent.code,
            city: self.city.names.en,
        };
        let knows_something = location.point.is_some()
            || location.country.is_some()
            || location.continent.is_some()
            || location.city.is_some();
        knows_something.then_some(location)
    }
}

/// Great-circle distance between two points in kilometres (haversine, on a sphere of
/// [`EARTH_RADIUS_KM`]). Stable for nearby and for antipodal points.
pub fn distance_km(a: GeoPoint, b: GeoPoint) -> f64 {
    let (lat_a, lat_b) = (a.latitude.to_radians(), b.latitude.to_radians());
    let half_dlat = (lat_b - lat_a) / 2.0;
    let half_dlon = (b.longitude - a.longitude).to_radians() / 2.0;
    let h = half_dlat.sin().powi(2) + lat_a.cos() * lat_b.cos() * half_dlon.sin().powi(2);
    // Rounding can push h a hair above 1 for antipodes, where asin would give NaN.
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::mmdb_writer::{Description, Value, Writer};
    use super::test_db::{loopback_test_networks, write_city_db, write_country_db};
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn at(latitude: f64, longitude: f64) -> GeoPoint {
        GeoPoint { latitude, longitude }
    }

    fn location(
        point: Option<GeoPoint>,
        country: &str,
        continent: &str,
        city: Option<&str>,
    ) -> ClientLocation {
        ClientLocation {
            point,
            country: Some(country.to_owned()),
            continent: Some(continent.to_owned()),
            city: city.map(str::to_owned),
        }
    }

    /// A database of hand-made records, one per network, to feed `locate` what real files might hold.
    fn database_of(database_type: &str, records: &[(&str, Value)]) -> Vec<u8> {
        let mut writer = Writer::new();
        for (network, record) in records {
            writer.insert(network.parse().unwrap(), record);
        }
        writer.finish(&Description {
            database_type,
            description: "test",
            languages: &["en"],
            build_epoch_s: 0,
        })
    }

    #[test]
    fn the_city_test_database_locates_each_loopback_network() {
        let geo = GeoIp::from_bytes(write_city_db(&loopback_test_networks())).unwrap();
        assert_eq!(geo.database_type(), "bridgemesh-Test-City");
        let expected = [
            ("127.1.0.1", at(50.11, 8.68), "DE", "EU", "Frankfurt"),
            ("127.1.255.255", at(50.11, 8.68), "DE", "EU", "Frankfurt"),
            ("127.2.3.4", at(39.04, -77.49), "US", "NA", "Ashburn"),
            ("127.3.0.0", at(1.35, 103.82), "SG", "AS", "Singapore"),
            ("127.4.9.9", at(48.86, 2.35), "FR", "EU", "Paris"),
            ("127.5.0.1", at(37.77, -122.42), "US", "NA", "San Francisco"),
            // A dual-stack socket's form of an IPv4 client.
            ("::ffff:127.3.0.1", at(1.35, 103.82), "SG", "AS", "Singapore"),
        ];
        for (address, point, country, continent, city) in expected {
            assert_eq!(
                geo.locate(ip(address)),
                Some(location(Some(point), country, continent, Some(city))),
                "{address}"
            );
        }
        for unknown in [
            "127.0.0.1",
            "127.9.0.1",
            "127.6.0.0",
            "126.255.255.255",
            "128.1.0.1",
            "10.1.0.1",
            "::1",
            "2001:db8::1",
        ] {
            assert_eq!(geo.locate(ip(unknown)), None, "{unknown}");
            assert!(
                matches!(geo.try_locate(ip(unknown)), Ok(None)),
                "{unknown} is no error"
            );
        }
    }

    #[test]
    fn a_country_database_locates_without_a_point() {
        let geo = GeoIp::from_bytes(write_country_db(&loopback_test_networks())).unwrap();
        assert_eq!(geo.database_type(), "bridgemesh-Test-Country");
        assert_eq!(
            geo.locate(ip("127.1.2.3")),
            Some(location(None, "DE", "EU", None))
        );
        assert_eq!(
            geo.locate(ip("127.3.2.3")),
            Some(location(None, "SG", "AS", None))
        );
        assert_eq!(geo.locate(ip("127.9.0.1")), None);
        assert_eq!(geo.locate(ip("::1")), None);
    }

    #[test]
    fn records_are_read_field_by_field_and_bad_ones_give_none() {
        let coordinates = |latitude: Value, longitude: Value| {
            Value::map([(
                "location",
                Value::map([("latitude", latitude), ("longitude", longitude)]),
            )])
        };
        let bytes = database_of(
            "GeoLite2-City",
            &[
                // No `country`: the registered one stands in.
                (
                    "192.0.2.0/25",
                    Value::map([
                        (
                            "registered_country",
                            Value::map([("iso_code", Value::string("NO"))]),
                        ),
                        ("continent", Value::map([("code", Value::string("EU"))])),
                        ("traits", Value::map([("is_anycast", Value::Uint16(1))])),
                    ]),
                ),
                // A point off the globe is dropped; the rest stays.
                (
                    "192.0.2.128/25",
                    Value::map([
                        ("country", Value::map([("iso_code", Value::string("DE"))])),
                        (
                            "location",
                            Value::map([
                                ("latitude", Value::Double(123.0)),
                                ("longitude", Value::Double(8.0)),
                            ]),
                        ),
                    ]),
                ),
                (
                    "198.51.100.0/26",
                    coordinates(Value::Double(-33.87), Value::Double(151.21)),
                ),
                // Half a point is no point, and then nothing is known.
                (
                    "198.51.100.64/26",
                    Value::map([("location", Value::map([("latitude", Value::Double(1.0))]))]),
                ),
                // Malformed: a string where a number belongs, a record that is not a map.
                (
                    "198.51.100.128/26",
                    coordinates(Value::string("north"), Value::Double(1.0)),
                ),
                ("198.51.100.192/26", Value::string("Frankfurt")),
                ("203.0.113.0/24", Value::map([])),
            ],
        );
        let geo = GeoIp::from_bytes(bytes).unwrap();
        assert_eq!(
            geo.locate(ip("192.0.2.1")),
            Some(ClientLocation {
                point: None,
                country: Some("NO".into()),
                continent: Some("EU".into()),
                city: None
            })
        );
        assert_eq!(
            geo.locate(ip("192.0.2.129")),
            Some(ClientLocation {
                point: None,
                country: Some("DE".into()),
                continent: None,
                city: None
            })
        );
        assert_eq!(
            geo.locate(ip("198.51.100.1")),
            Some(ClientLocation {
                point: Some(at(-33.87, 151.21)),
                country: None,
                continent: None,
                city: None
            })
        );
        assert_eq!(geo.locate(ip("198.51.100.65")), None);
        for malformed in ["198.51.100.129", "198.51.100.193"] {
            assert_eq!(geo.locate(ip(malformed)), None, "{malformed}");
            assert!(
                matches!(geo.try_locate(ip(malformed)), Err(LookupError::Record(_))),
                "{malformed}"
            );
        }
        assert_eq!(
            geo.locate(ip("203.0.113.9")),
            None,
            "an empty record knows nothing"
        );
    }

    #[test]
    fn opening_says_which_file_and_what_is_wrong_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("GeoLite2-City.mmdb");
        let error = GeoIp::open(&missing).unwrap_err();
        assert!(matches!(error, GeoIpError::Read { .. }));
        assert!(error.to_string().contains(&*missing.to_string_lossy()), "{error}");

        let not_mmdb = dir.path().join("notes.txt");
        std::fs::write(&not_mmdb, "not a database").unwrap();
        let error = GeoIp::open(&not_mmdb).unwrap_err();
        assert!(matches!(error, GeoIpError::NotMaxMindDb { .. }));
        assert!(
            error
                .to_string()
                .starts_with(&format!("{} is not a MaxMind DB", not_mmdb.display())),
            "{error}"
        );

        let asn = dir.path().join("GeoLite2-ASN.mmdb");
        std::fs::write(&asn, database_of("GeoLite2-ASN", &[])).unwrap();
        let error = GeoIp::open(&asn).unwrap_err();
        assert!(matches!(error, GeoIpError::NotALocationDatabase { .. }));
        assert!(error.to_string().contains("`GeoLite2-ASN` database"), "{error}");

        let city = dir.path().join("test-city.mmdb");
        std::fs::write(&city, write_city_db(&loopback_test_networks())).unwrap();
        let geo = GeoIp::open(&city).unwrap();
        assert_eq!(
            geo.locate(ip("127.4.0.1")).and_then(|l| l.city).as_deref(),
            Some("Paris")
        );
        assert!(matches!(
            GeoIp::from_bytes(Vec::new()),
            Err(GeoIpError::NotMaxMindDb { .. })
        ));
    }

    #[test]
    fn a_truncated_database_is_refused_or_locates_nobody_without_panicking() {
        let bytes = write_city_db(&loopback_test_networks());
        for cut in (0..bytes.len()).step_by(7) {
            let mut damaged = bytes.clone();
            damaged.truncate(cut);
            if let Ok(geo) = GeoIp::from_bytes(damaged) {
                let _ = geo.locate(ip("127.1.0.1"));
            }
        }
        // Damage inside the data section: every byte flipped in turn.
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0xff;
            if let Ok(geo) = GeoIp::from_bytes(damaged) {
                for address in ["127.1.0.1", "127.3.0.1", "127.9.0.1", "::1"] {
                    let _ = geo.locate(ip(address));
                }
            }
        }
    }

    #[test]
    fn a_database_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<GeoIp>();
    }

    #[test]
    fn client_locations_serialize_as_plain_json() {
        let frankfurt = location(Some(at(50.11, 8.68)), "DE", "EU", Some("Frankfurt"));
        let json = serde_json::to_string(&frankfurt).unwrap();
        assert_eq!(
            json,
            r#"{"point":{"latitude":50.11,"longitude":8.68},"country":"DE","continent":"EU","city":"Frankfurt"}"#
        );
        assert_eq!(serde_json::from_str::<ClientLocation>(&json).unwrap(), frankfurt);
    }

    /// Great-circle figures from published references (within 0.5 %, the spread between a sphere
    /// and the ellipsoid), and the sphere's own exact cases.
    #[test]
    fn distances_match_known_city_pairs() {
        let london = at(51.5074, -0.1278);
        let paris = at(48.8566, 2.3522);
        let new_york = at(40.7128, -74.0060);
        let los_angeles = at(34.0522, -118.2437);
        let sydney = at(-33.8688, 151.2093);
        let frankfurt = at(50.11, 8.68);
        let singapore = at(1.35, 103.82);
        for (a, b, km) in [
            (london, paris, 343.5),
            (new_york, los_angeles, 3936.0),
            (london, sydney, 16_994.0),
            (frankfurt, singapore, 10_260.0),
        ] {
            let found = distance_km(a, b);
            assert!(
                (found - km).abs() / km < 0.005,
                "{a:?} to {b:?}: {found} km, expected {km}"
            );
            assert_eq!(found, distance_km(b, a), "symmetric");
        }
        assert_eq!(distance_km(paris, paris), 0.0);
        // Antipodes, to a metre: haversine loses some precision there (asin near 1), but no more.
        let half_circumference = std::f64::consts::PI * EARTH_RADIUS_KM;
        for (a, b) in [
            (at(0.0, 0.0), at(0.0, 180.0)),
            (at(90.0, 0.0), at(-90.0, 0.0)),
            (at(10.0, 20.0), at(-10.0, -160.0)),
            (at(-45.5, 100.25), at(45.5, -79.75)),
        ] {
            let found = distance_km(a, b);
            assert!(
                (found - half_circumference).abs() < 1e-3,
                "{a:?} to {b:?}: {found} km"
            );
        }
        // Across the antimeridian the short way round: one degree of longitude at the equator.
        let one_degree = distance_km(at(0.0, 179.5), at(0.0, -179.5));
        assert!(
            (one_degree - half_circumference / 180.0).abs() < 1e-6,
            "{one_degree}"
        );
    }
}
