//! Where a joining participant is: its address (from the socket, or from a trusted proxy's
//! forwarding headers) looked up in the MaxMind database, then mapped to what placement uses.

use crate::client_ip::{TrustedProxies, client_ip};
use crate::geo::GeoIp;
use crate::placement::ClientPlace;
use axum::http::HeaderMap;
use bridgemesh_proto::RegionId;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// The operator's geolocation settings. With no database every participant is unlocated and goes
/// to the default region (or anywhere, without one).
#[derive(Clone, Default)]
pub struct Locator {
    pub geoip: Option<Arc<GeoIp>>,
    pub trusted_proxies: TrustedProxies,
    /// ISO country code → region, for databases without coordinates (GeoLite2-Country) or to
    /// override them.
    pub country_regions: BTreeMap<String, RegionId>,
    /// Continent code (`EU`, `NA`, `AS`, ...) → region, when the country has no entry.
    pub continent_regions: BTreeMap<String, RegionId>,
}

impl std::fmt::Debug for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locator")
            .field("geoip", &self.geoip.is_some())
            .field("country_regions", &self.country_regions)
            .field("continent_regions", &self.continent_regions)
            .finish_non_exhaustive()
    }
}

impl Locator {
    /// The client's place, from the connection's peer address and the request's headers.
    pub fn place(&self, peer: IpAddr, headers: &HeaderMap) -> ClientPlace {
        self.place_of(client_ip(peer, headers, &self.trusted_proxies))
    }

    /// The place of the client at `ip`.
    pub fn place_of(&self, ip: IpAddr) -> ClientPlace {
        let Some(location) = self.geoip.as_ref().and_then(|db| db.locate(ip)) else {
            return ClientPlace::default();
        };
        let mapped = location
            .country
            .as_ref()
            .and_then(|c| self.country_regions.get(c))
            .or_else(|| {
                location
                    .continent
                    .as_ref()
                    .and_then(|c| self.continent_regions.get(c))
            })
            .cloned();
        match mapped {
            // The operator's table wins over coordinates: it is how a country is pinned to a region.
            Some(region) => ClientPlace {
                point: None,
                region: Some(region),
            },
            None => ClientPlace {
                point: location.point,
                region: None,
            },
        }
    }
}
