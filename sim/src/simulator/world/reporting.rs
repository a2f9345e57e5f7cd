//! The end of a run: the report, the media sample and the timeline.

use super::*;

impl World {
    pub(super) fn report(self) -> Report {
        let faults = self
            .faults
            .iter()
            .map(|f| FaultReport {
                at_s: f.at_ms / 1000,
                kind: f.kind.clone(),
                bridge: f.bridge.clone(),
                affected: f.affected,
                recovered: f.recovery_ms.len() as u64,
                gave_up: f.gave_up,
                left: f.left,
                recovery_ms: Quantiles::of(&f.recovery_ms),
            })
            .collect();
        let bridges = self
            .bridges
            .iter()
            .map(|b| BridgeReport {
                id: b.id.to_string(),
                region: self.region_ids[b.region].to_string(),
                capacity: b.capacity,
                peak_participants: b.peak as u64,
            })
            .collect();
        let regions = self
            .region_ids
            .iter()
            .enumerate()
            .map(|(i, id)| RegionReport {
                id: id.to_string(),
                peak_participants: self.region_peak[i] as u64,
            })
            .collect();
        let timeline = self.timeline();
        let mut links: Vec<crate::simulator::report::LinkReport> = self
            .cascade_peak_kbps
            .iter()
            .map(|((a, b), kbps)| crate::simulator::report::LinkReport {
                from: self.bridges[*a].id.to_string(),
                to: self.bridges[*b].id.to_string(),
                peak_kbps: *kbps,
            })
            .collect();
        links.sort_by(|x, y| {
            y.peak_kbps
                .cmp(&x.peak_kbps)
                .then(x.from.cmp(&y.from))
                .then(x.to.cmp(&y.to))
        });
        let cascade_links = links.len() as u64;
        links.truncate(crate::simulator::report::LINKS_LISTED_MAX);
        let mut violations = self.violations;
        violations
            .sort_by(|a, b| (a.at_ms, &a.invariant, &a.message).cmp(&(b.at_ms, &b.invariant, &b.message)));
        let violation_count = violations.len() as u64;
        violations.truncate(crate::simulator::report::VIOLATIONS_LISTED_MAX);
        Report {
            scenario: self.scenario.name.clone(),
            seed: self.seed,
            simulated_s: self.end_ms / 1000,
            events: self.events,
            participants_arrived: self.participants.len() as u64,
            rooms: self.rooms_created,
            joins_ok: self.joins_ok,
            joins_failed: self.joins_failed,
            bridges_declared_down: self.bridges_declared_down,
            cascade_links,
            busiest_links: links,
            media: self.media,
            elections: self.elections,
            join_failures: self.join_failures,
            faults,
            bridges,
            regions,
            violation_count,
            violations,
            timeline,
        }
    }

    /// The media now: every room's participants grouped by the bridge hosting them, through the
    /// bridges' views of the cascade. Records the bandwidth per link and who misses whom.
    pub(super) fn sample_media(&mut self) -> cascade::MediaSample {
        let settled_before_ms = self.now_ms.saturating_sub(invariants::media_delivery::BOUND_MS);
        // By room number, not id: no string comparisons for 100k participants every 10 s.
        let mut rooms: Vec<(Option<&RoomId>, Vec<Group>)> =
            vec![(None, Vec::new()); self.rooms_created as usize];
        for (index, p) in self.participants.iter().enumerate() {
            let Some(bridge) = p.hosted_on.filter(|_| p.active) else {
                continue;
            };
            let (room, groups) = &mut rooms[p.room_number];
            room.get_or_insert(&p.room);
            let group = match groups.iter_mut().position(|g| g.bridge == bridge) {
                Some(at) => &mut groups[at],
                None => {
                    groups.push(Group {
                        bridge,
                        region: self.bridges[bridge].region,
                        ..Group::default()
                    });
                    groups.last_mut().expect("just pushed")
                }
            };
            group.participants += 1;
            if p.connected_at_ms <= settled_before_ms {
                group.settled += 1;
                group.example.get_or_insert(index);
            }
        }
        let per_publisher_kbps =
            u64::from(self.scenario.participants.audio_kbps + self.scenario.participants.video_kbps);
        let network = &self.network;
        let sample = cascade::sample(
            &self.cascade,
            rooms
                .iter()
                .filter_map(|(room, groups)| Some((room.as_ref()?, groups.as_slice())))
                .filter(|(_, groups)| groups.len() > 1)
                .map(|(room, groups)| (*room, groups)),
            per_publisher_kbps,
            |a, b| network.both_ways(a, b),
            |a, b| network.bandwidth_kbps(a, b),
        );
        self.timeline_cascade_kbps.push(sample.link_kbps.values().sum());
        for (link, kbps) in &sample.link_kbps {
            let peak = self.cascade_peak_kbps.entry(*link).or_insert(0);
            *peak = (*peak).max(*kbps);
        }
        let m = &mut self.media;
        m.samples += 1;
        m.samples_with_gaps += u64::from(sample.pairs_missing > 0);
        m.congested_link_samples += sample.congested_links;
        if sample.pairs_missing > m.pairs_missing_peak {
            m.pairs_missing_peak = sample.pairs_missing;
            m.pairs_missing_peak_at_s = self.now_ms / 1000;
        }
        self.timeline_media_missing.push(sample.pairs_missing);
        sample
    }

    /// The per-region series, and the busiest bridges' (by peak), for the report's plots.
    pub(super) fn timeline(&self) -> crate::simulator::report::Timeline {
        let series =
            |index: usize, of: &[Vec<u32>]| of.iter().map(|sample| sample[index]).collect::<Vec<_>>();
        let regions = self
            .region_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.to_string(), series(i, &self.timeline_regions)))
            .collect();
        let mut by_peak: Vec<usize> = (0..self.bridges.len()).collect();
        by_peak.sort_by(|a, b| self.bridges[*b].peak.cmp(&self.bridges[*a].peak).then(a.cmp(b)));
        let busiest_bridges = by_peak
            .into_iter()
            .take(crate::simulator::report::TIMELINE_BRIDGES_MAX)
            .map(|i| (self.bridges[i].id.to_string(), series(i, &self.timeline_bridges)))
            .collect();
        let recovery_ms = self
            .faults
            .iter()
            .flat_map(|f| f.recovery_ms.iter().copied())
            .collect();
        crate::simulator::report::Timeline {
            t_s: self.timeline_t_s.clone(),
            regions,
            busiest_bridges,
            recovery_ms,
            cascade_kbps: self.timeline_cascade_kbps.clone(),
            media_pairs_missing: self.timeline_media_missing.clone(),
        }
    }
}
