//! Choosing a bridge for a participant: a pure function of the replicated state and where the
//! participant is.
//!
//! The rule, in order:
//! 1. Only bridges that are `up`, below their participant capacity and below the per-room cap
//!    for this room are candidates. A bridge whose *effective stress* (its last reported stress
//!    plus [`PlacementPolicy::stress_per_join`] for every participant placed on it since that
//!    report, so a burst of joins between two reports does not pile onto one bridge) is at or
//!    above [`PlacementPolicy::overload_stress`] is overloaded.
//! 2. Regions are ranked by distance from the participant: great-circle distance from the
//!    participant's location to the region's location (the mean of its bridges' locations).
//!    A participant without a location but with a region hint (country/continent mapping) ranks
//!    that region first; one with neither ranks the policy's default region first, then the
//!    others by distance from it.
//! 3. In the first region that has a candidate that is not overloaded: a bridge there already
//!    hosting the room, else the least stressed. Ties break by bridge id, so every node (and the
//!    simulator) picks the same bridge from the same state.
//! 4. If every candidate is overloaded: the least stressed candidate anywhere, nearest region
//!    first. Overload steers, capacity refuses.
//!
//! The state machine runs this same function when it moves the participants of a bridge that is
//! down or draining, which is why it takes the state and nothing else that could differ between
//! replicas.

use crate::geo::distance_km;
use crate::state::{BridgeRecord, BridgeStatus, ControlState, RoomRecord};
use bridgemesh_proto::bridge_session::GeoPoint;
use bridgemesh_proto::{BridgeId, RegionId, RoomId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a participant is, as far as control could tell when it joined.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientPlace {
    /// From the MaxMind City database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<GeoPoint>,
    /// From the operator's country/continent → region table, when there is no point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<RegionId>,
}

impl Eq for ClientPlace {}

/// The operator's placement settings. They live in the replicated state (set by the leader from
/// its configuration) because the state machine places participants itself when it moves them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlacementPolicy {
    /// Where participants go whose location is unknown.
    pub default_region: Option<RegionId>,
    /// Effective stress at which a bridge counts as overloaded (Jitsi uses 0.8).
    pub overload_stress: f64,
    /// Stress added per participant placed since the bridge's last load report.
    pub stress_per_join: f64,
}

impl Default for PlacementPolicy {
    fn default() -> Self {
        Self {
            default_region: None,
            overload_stress: 0.8,
            stress_per_join: 0.01,
        }
    }
}

impl Eq for PlacementPolicy {}

impl PlacementPolicy {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.overload_stress.is_finite() && self.overload_stress > 0.0) {
            return Err("overload_stress must be a positive number".into());
        }
        if !(self.stress_per_join.is_finite() && self.stress_per_join >= 0.0) {
            return Err("stress_per_join must be zero or a positive number".into());
        }
        Ok(())
    }
}

/// A bridge's reported stress plus its burst correction.
pub fn effective_stress(bridge: &BridgeRecord, policy: &PlacementPolicy) -> f64 {
    bridge.load.stress + f64::from(bridge.load.placed_since_report) * policy.stress_per_join
}

/// The mean location of each region's bridges that declared one.
pub fn region_locations(state: &ControlState) -> BTreeMap<RegionId, GeoPoint> {
    let mut sums: BTreeMap<&RegionId, (f64, f64, f64, u32)> = BTreeMap::new();
    for bridge in state.bridges.values() {
        if let Some(point) = bridge.location {
            // Longitudes are averaged on the unit circle so a region straddling ±180° works.
            let entry = sums.entry(&bridge.region).or_default();
            entry.0 += point.latitude;
            entry.1 += point.longitude.to_radians().sin();
            entry.2 += point.longitude.to_radians().cos();
            entry.3 += 1;
        }
    }
    sums.into_iter()
        .map(|(region, (lat, sin, cos, n))| {
            let point = GeoPoint {
                latitude: lat / f64::from(n),
                longitude: sin.atan2(cos).to_degrees(),
            };
            (region.clone(), point)
        })
        .collect()
}

/// The bridge for one more participant of `room` at `client`, never `exclude`; `None` when no
/// bridge has a seat.
pub fn choose_bridge(
    state: &ControlState,
    room: &RoomId,
    client: &ClientPlace,
    exclude: Option<&BridgeId>,
) -> Option<BridgeId> {
    let policy = &state.placement;
    let seats = state
        .rooms
        .get(room)
        .map(RoomRecord::seats_per_bridge)
        .unwrap_or_default();
    let seats_on = |b: &BridgeRecord| seats.get(&b.id).copied().unwrap_or(0);
    let candidates: Vec<&BridgeRecord> = state
        .bridges
        .values()
        .filter(|b| Some(&b.id) != exclude)
        .filter(|b| b.status == BridgeStatus::Up)
        .filter(|b| state.bridge_load.get(&b.id).copied().unwrap_or(0) < b.capacity)
        .filter(|b| seats_on(b) < b.max_participants_per_room as usize)
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let regions = region_order(state, client, &candidates);
    let rank = |b: &BridgeRecord| regions.iter().position(|r| r == &b.region).unwrap_or(usize::MAX);
    let overloaded = |b: &BridgeRecord| effective_stress(b, policy) >= policy.overload_stress;

    for region in &regions {
        let in_region: Vec<&BridgeRecord> = candidates
            .iter()
            .copied()
            .filter(|b| &b.region == region && !overloaded(b))
            .collect();
        if in_region.is_empty() {
            continue;
        }
        let hosting = in_region
            .iter()
            .copied()
            .filter(|b| seats_on(b) > 0)
            .min_by(|a, b| by_stress(a, b, policy));
        let chosen = hosting.or_else(|| in_region.iter().copied().min_by(|a, b| by_stress(a, b, policy)));
        return chosen.map(|b| b.id.clone());
    }
    // Everything with a seat is overloaded: least stressed, nearest region first.
    candidates
        .iter()
        .copied()
        .min_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| by_stress(a, b, policy)))
        .map(|b| b.id.clone())
}

fn by_stress(a: &BridgeRecord, b: &BridgeRecord, policy: &PlacementPolicy) -> std::cmp::Ordering {
    effective_stress(a, policy)
        .total_cmp(&effective_stress(b, policy))
        .then_with(|| a.id.cmp(&b.id))
}

/// The regions of `candidates`, nearest to the client first.
fn region_order(state: &ControlState, client: &ClientPlace, candidates: &[&BridgeRecord]) -> Vec<RegionId> {
    let locations = region_locations(state);
    let mut regions: Vec<RegionId> = candidates.iter().map(|b| b.region.clone()).collect();
    regions.sort();
    regions.dedup();
    let preferred = match (client.point, &client.region) {
        (Some(_), _) => None,
        (None, Some(region)) => Some(region.clone()),
        (None, None) => state.placement.default_region.clone(),
    };
    // Without a client location, distances are measured from the preferred region's location.
    let origin = client
        .point
        .or_else(|| preferred.as_ref().and_then(|r| locations.get(r).copied()));
    let distance = |region: &RegionId| match (origin, locations.get(region)) {
        (Some(from), Some(to)) => distance_km(from, *to),
        _ => f64::INFINITY,
    };
    regions.sort_by(|a, b| {
        let first = |r: &RegionId| Some(r) != preferred.as_ref();
        first(a)
            .cmp(&first(b))
            .then_with(|| distance(a).total_cmp(&distance(b)))
            .then_with(|| a.cmp(b))
    });
    regions
}

#[cfg(test)]
mod tests;
