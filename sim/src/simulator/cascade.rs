//! The bridges' side of the cascade. Control's side is real: the hub engine's membership push decides
//! which `room_bridges` messages go out, and the world delivers them over the modeled network.
//! Here each bridge keeps what it last heard, and from that the media follows: a subscriber
//! receives a publisher on its own bridge, or on a bridge both of whose views of the room name
//! the other, while a connection between their regions works both ways and its bandwidth
//! holds. Media is streams, not packets: each publisher's stream crosses each link once.

use bridgemesh_proto::RoomId;
use std::collections::BTreeMap;

/// What one bridge hears from control: one room's peers (`[]`: the room is no longer shared),
/// or, right after it registers, the full set, replacing all it knew.
#[derive(Debug, Clone)]
pub enum MembershipUpdate {
    Room(RoomId, Vec<usize>),
    Full(Vec<(RoomId, Vec<usize>)>),
}

pub struct CascadeModel {
    /// Each bridge's: the rooms it shares, each with the peers control named.
    views: Vec<BTreeMap<RoomId, Vec<usize>>>,
}

impl CascadeModel {
    pub fn new(bridges: usize) -> Self {
        CascadeModel {
            views: vec![BTreeMap::new(); bridges],
        }
    }

    /// The bridge's process died: it remembers nothing.
    pub fn forget(&mut self, bridge: usize) {
        self.views[bridge].clear();
    }

    pub fn hear(&mut self, bridge: usize, update: MembershipUpdate) {
        let view = &mut self.views[bridge];
        match update {
            MembershipUpdate::Room(room, peers) if peers.is_empty() => {
                view.remove(&room);
            }
            MembershipUpdate::Room(room, peers) => {
                view.insert(room, peers);
            }
            MembershipUpdate::Full(rooms) => {
                *view = rooms.into_iter().filter(|(_, peers)| !peers.is_empty()).collect();
            }
        }
    }

    /// The peers `bridge` knows in `room`.
    pub fn peers(&self, bridge: usize, room: &RoomId) -> &[usize] {
        self.views[bridge].get(room).map_or(&[], Vec::as_slice)
    }
}

/// The participants of one room on one bridge, at a sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct Group {
    pub bridge: usize,
    pub region: usize,
    pub participants: u64,
    /// Connected for longer than the media bound: they must have media by now.
    pub settled: u64,
    /// One settled participant, to name in a violation.
    pub example: Option<usize>,
}

/// Media across bridges at one moment.
#[derive(Debug, Default)]
pub struct MediaSample {
    /// kbit/s each directed bridge pair carries.
    pub link_kbps: BTreeMap<(usize, usize), u64>,
    /// Subscriber–publisher pairs without media: all, and those where both sides are settled,
    /// with one such pair per room and bridge pair to name (room, publisher, subscriber).
    pub pairs_missing: u64,
    pub settled_pairs_missing: u64,
    pub examples: Vec<(RoomId, usize, usize)>,
    /// Directed region pairs whose cascade was over their bandwidth.
    pub congested_links: u64,
}

/// Examples of missing media a sample keeps.
const EXAMPLES_MAX: usize = 20;

/// Samples the media of every room, given each room's groups (participants connected now, by
/// bridge): what crosses each bridge pair, and who misses whom. `connected` says whether the
/// regions of two bridges can hold a connection; `bandwidth_kbps` is a region pair's cap.
pub fn sample<'a>(
    model: &CascadeModel,
    rooms: impl Iterator<Item = (&'a RoomId, &'a [Group])>,
    per_publisher_kbps: u64,
    connected: impl Fn(usize, usize) -> bool,
    bandwidth_kbps: impl Fn(usize, usize) -> Option<u64>,
) -> MediaSample {
    let mut out = MediaSample::default();
    // Links carrying media: room, publishers' group, subscribers' group.
    let mut carried: Vec<(&RoomId, Group, Group)> = Vec::new();
    let mut region_kbps: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    let missing = |out: &mut MediaSample, room: &RoomId, from: &Group, to: &Group| {
        out.pairs_missing += from.participants * to.participants;
        let settled = from.settled * to.settled;
        out.settled_pairs_missing += settled;
        if let (true, Some(p), Some(s)) = (settled > 0, from.example, to.example)
            && out.examples.len() < EXAMPLES_MAX
        {
            out.examples.push((room.clone(), p, s));
        }
    };
    for (room, groups) in rooms {
        // One lookup per bridge of the room, not per pair.
        let views: Vec<&[usize]> = groups.iter().map(|g| model.peers(g.bridge, room)).collect();
        for (i, from) in groups.iter().enumerate() {
            for (j, to) in groups.iter().enumerate().filter(|(_, g)| g.bridge != from.bridge) {
                let linked = views[i].contains(&to.bridge) && views[j].contains(&from.bridge);
                let up = linked && connected(from.region, to.region);
                if !up {
                    missing(&mut out, room, from, to);
                    continue;
                }
                let kbps = from.participants * per_publisher_kbps;
                *out.link_kbps.entry((from.bridge, to.bridge)).or_insert(0) += kbps;
                if from.region != to.region {
                    *region_kbps.entry((from.region, to.region)).or_insert(0) += kbps;
                }
                carried.push((room, *from, *to));
            }
        }
    }
    let congested: Vec<(usize, usize)> = region_kbps
        .into_iter()
        .filter(|((a, b), kbps)| bandwidth_kbps(*a, *b).is_some_and(|cap| *kbps > cap))
        .map(|(pair, _)| pair)
        .collect();
    out.congested_links = congested.len() as u64;
    if !congested.is_empty() {
        for (room, from, to) in carried {
            if congested.contains(&(from.region, to.region)) {
                missing(&mut out, room, &from, &to);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomId {
        RoomId::new("r").expect("valid")
    }

    fn group(bridge: usize, region: usize, participants: u64, example: usize) -> Group {
        Group {
            bridge,
            region,
            participants,
            settled: participants,
            example: Some(example),
        }
    }

    #[test]
    fn media_crosses_only_links_both_bridges_know() {
        let mut model = CascadeModel::new(3);
        let groups = [group(0, 0, 2, 10), group(1, 1, 1, 11)];
        let id = room();
        let rooms = || std::iter::once((&id, &groups[..]));
        let s = sample(&model, rooms(), 500, |_, _| true, |_, _| None);
        assert_eq!((s.pairs_missing, s.settled_pairs_missing), (4, 4));
        assert!(s.link_kbps.is_empty());
        // One side told is not enough: the other has not opened the room.
        model.hear(0, MembershipUpdate::Room(room(), vec![1]));
        assert_eq!(
            sample(&model, rooms(), 500, |_, _| true, |_, _| None).pairs_missing,
            4
        );
        model.hear(1, MembershipUpdate::Full(vec![(room(), vec![0])]));
        let s = sample(&model, rooms(), 500, |_, _| true, |_, _| None);
        assert_eq!(s.pairs_missing, 0);
        assert_eq!(
            s.link_kbps.get(&(0, 1)),
            Some(&1000),
            "two publishers cross once each"
        );
        assert_eq!(s.link_kbps.get(&(1, 0)), Some(&500));
        // A cut between the regions, then a cap below what crosses.
        let s = sample(&model, rooms(), 500, |a, b| a == b, |_, _| None);
        assert_eq!(s.pairs_missing, 4);
        assert_eq!(s.examples.len(), 2);
        let s = sample(&model, rooms(), 500, |_, _| true, |_, _| Some(800));
        assert_eq!((s.congested_links, s.pairs_missing), (1, 2));
        // A died bridge forgets; `[]` closes the room.
        model.forget(1);
        assert!(model.peers(1, &room()).is_empty());
        model.hear(0, MembershipUpdate::Room(room(), vec![]));
        assert!(model.views[0].is_empty());
    }
}
