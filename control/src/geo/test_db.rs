//! Small GeoIP databases made up on the spot, for tests and for operators trying regions on one
//! machine: nothing is downloaded, and the addresses are loopback ones a single host can use as
//! client sources (`curl --interface 127.2.0.1`, or a browser behind a local proxy).
//!
//! The records have the shape of MaxMind's (`city.names.en`, `country.iso_code`,
//! `continent.code`, `location.latitude/longitude`), so any MaxMind DB reader can read them.

use super::mmdb_writer::{Description, Value, Writer};
use bridgemesh_proto::bridge_session::GeoPoint;
use bridgemesh_proto::cidr::Cidr;

/// `database_type` of [`write_city_db`]'s output.
pub const TEST_CITY_DATABASE_TYPE: &str = "bridgemesh-Test-City";
/// `database_type` of [`write_country_db`]'s output.
pub const TEST_COUNTRY_DATABASE_TYPE: &str = "bridgemesh-Test-Country";

/// One network of a test database and the place its addresses are at.
#[derive(Debug, Clone, PartialEq)]
pub struct TestNetwork {
    pub network: Cidr,
    /// English city name.
    pub city: String,
    /// ISO 3166-1 alpha-2 code.
    pub country: String,
    /// MaxMind continent code (`EU`, `NA`, `AS`, ...).
    pub continent: String,
    pub point: GeoPoint,
}

impl TestNetwork {
    /// `network` must be a valid CIDR network; this is meant for literals in code.
    pub fn new(network: &str, city: &str, country: &str, continent: &str, point: GeoPoint) -> Self {
        Self {
            network: network
                .parse()
                .unwrap_or_else(|error| panic!("test network: {error}")),
            city: city.to_owned(),
            country: country.to_owned(),
            continent: continent.to_owned(),
            point,
        }
    }
}

/// Five /16 networks in 127.0.0.0/8, in three continents. Everything else, 127.0.0.1 and ::1
/// included, is not in the database.
pub fn loopback_test_networks() -> Vec<TestNetwork> {
    let at = |latitude, longitude| GeoPoint { latitude, longitude };
    vec![
        TestNetwork::new("127.1.0.0/16", "Frankfurt", "DE", "EU", at(50.11, 8.68)),
        TestNetwork::new("127.2.0.0/16", "Ashburn", "US", "NA", at(39.04, -77.49)),
        TestNetwork::new("127.3.0.0/16", "Singapore", "SG", "AS", at(1.35, 103.82)),
        TestNetwork::new("127.4.0.0/16", "Paris", "FR", "EU", at(48.86, 2.35)),
        TestNetwork::new("127.5.0.0/16", "San Francisco", "US", "NA", at(37.77, -122.42)),
    ]
}

/// A GeoIP2-City-shaped database of `networks` (where they overlap, the later one wins).
/// Deterministic: the same networks always give the same bytes (the build time says 1970).
pub fn write_city_db(networks: &[TestNetwork]) -> Vec<u8> {
    let mut writer = Writer::new();
    for network in networks {
        let record = Value::map([
            (
                "city",
                Value::map([("names", Value::map([("en", Value::string(&network.city))]))]),
            ),
            (
                "continent",
                Value::map([("code", Value::string(&network.continent))]),
            ),
            (
                "country",
                Value::map([("iso_code", Value::string(&network.country))]),
            ),
            (
                "location",
                Value::map([
                    ("latitude", Value::Double(network.point.latitude)),
                    ("longitude", Value::Double(network.point.longitude)),
                ]),
            ),
            (
                "registered_country",
                Value::map([("iso_code", Value::string(&network.country))]),
            ),
        ]);
        writer.insert(network.network, &record);
    }
    writer.finish(&Description {
        database_type: TEST_CITY_DATABASE_TYPE,
        description: "bridgemesh test City database: made-up locations, not real ones",
        languages: &["en"],
        build_epoch_s: 0,
    })
}

/// A GeoIP2-Country-shaped database of `networks`: country and continent only, no city or point.
pub fn write_country_db(networks: &[TestNetwork]) -> Vec<u8> {
    let mut writer = Writer::new();
    for network in networks {
        let record = Value::map([
            (
                "continent",
                Value::map([("code", Value::string(&network.continent))]),
            ),
            (
                "country",
                Value::map([("iso_code", Value::string(&network.country))]),
            ),
            (
                "registered_country",
                Value::map([("iso_code", Value::string(&network.country))]),
            ),
        ]);
        writer.insert(network.network, &record);
    }
    writer.finish(&Description {
        database_type: TEST_COUNTRY_DATABASE_TYPE,
        description: "bridgemesh test Country database: made-up locations, not real ones",
        languages: &["en"],
        build_epoch_s: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxminddb::geoip2;

    /// The files pass the reader's full verification, and its own GeoIP2 types read the fields a
    /// real GeoIP2 file has where a real file has them.
    #[test]
    fn the_databases_are_valid_and_geoip2_shaped() {
        let city = maxminddb::Reader::from_source(write_city_db(&loopback_test_networks())).unwrap();
        city.verify().unwrap();
        assert_eq!(city.metadata().database_type, TEST_CITY_DATABASE_TYPE);
        let record: geoip2::City = city
            .lookup("127.5.1.1".parse().unwrap())
            .unwrap()
            .decode()
            .unwrap()
            .unwrap();
        assert_eq!(record.city.names.english, Some("San Francisco"));
        assert_eq!(record.country.iso_code, Some("US"));
        assert_eq!(record.registered_country.iso_code, Some("US"));
        assert_eq!(record.continent.code, Some("NA"));
        assert_eq!(record.location.latitude, Some(37.77));
        assert_eq!(record.location.longitude, Some(-122.42));

        let country = maxminddb::Reader::from_source(write_country_db(&loopback_test_networks())).unwrap();
        country.verify().unwrap();
        assert_eq!(country.metadata().database_type, TEST_COUNTRY_DATABASE_TYPE);
        let record: geoip2::Country = country
            .lookup("127.2.0.1".parse().unwrap())
            .unwrap()
            .decode()
            .unwrap()
            .unwrap();
        assert_eq!(record.country.iso_code, Some("US"));
        assert_eq!(record.continent.code, Some("NA"));
    }

    #[test]
    fn the_same_networks_give_the_same_bytes() {
        let networks = loopback_test_networks();
        assert_eq!(write_city_db(&networks), write_city_db(&networks));
        assert_ne!(write_city_db(&networks), write_city_db(&networks[..4]));
    }

    #[test]
    fn the_loopback_networks_are_the_documented_ones() {
        let summary: Vec<String> = loopback_test_networks()
            .iter()
            .map(|n| {
                format!(
                    "{} {} {} {} {},{}",
                    n.network, n.city, n.country, n.continent, n.point.latitude, n.point.longitude
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                "127.1.0.0/16 Frankfurt DE EU 50.11,8.68",
                "127.2.0.0/16 Ashburn US NA 39.04,-77.49",
                "127.3.0.0/16 Singapore SG AS 1.35,103.82",
                "127.4.0.0/16 Paris FR EU 48.86,2.35",
                "127.5.0.0/16 San Francisco US NA 37.77,-122.42",
            ]
        );
    }
}
