//! The hold with faults ([`LoadRun::hold_with_faults`]), the leader-outage watch and its probe
//! joins, and [`run_local`].

use super::*;

impl LoadRun {
    /// Holds for `duration` like [`Self::hold`], carrying out `plan` against `cluster` on the way,
    /// and keeps what happened for the report's `faults` section. A leader kill is watched for a
    /// few seconds (new leader, probe joins, media); the hold lasts at least until that ends.
    pub async fn hold_with_faults(
        &mut self,
        duration: Duration,
        cluster: &mut LocalCluster,
        plan: &FaultPlan,
    ) {
        let hold_started = Instant::now();
        let end = hold_started + duration;
        let mut report = FaultReport::default();
        // Kills, then the restarts they schedule; at most four events.
        let mut events: Vec<(Instant, Event)> = plan
            .kills()
            .into_iter()
            .map(|(at, kill)| (hold_started + at, Event::Kill(kill)))
            .collect();
        let restart_after = plan.restart_after_s.map(Duration::from_secs_f64);
        // The bridge killed, when, and the participants it hosted.
        let mut bridge_killed: Option<(BridgeId, Instant, f64, Vec<usize>)> = None;
        while let Some(next) = (0..events.len()).min_by_key(|&i| events[i].0) {
            let (at, event) = events.swap_remove(next);
            self.hold_until(at, end).await;
            let now = Instant::now();
            let at_s = now.duration_since(hold_started).as_secs_f64();
            match event {
                Event::Kill(faults::Kill::Bridge) => {
                    let mut hosted: std::collections::BTreeMap<BridgeId, Vec<usize>> = Default::default();
                    for (i, joined) in self.joined.iter().enumerate() {
                        hosted.entry(joined.participant.bridge_id()).or_default().push(i);
                    }
                    // The most participants; of equals, the first by id.
                    let busiest = hosted.into_iter().rev().max_by_key(|(_, on)| on.len());
                    match busiest {
                        Some((bridge, on)) if cluster.kill_bridge(&bridge) => {
                            tracing::info!(%bridge, participants = on.len(), "killed a bridge");
                            if let Some(after) = restart_after {
                                events.push((now + after, Event::RestartBridge(bridge.clone())));
                            }
                            bridge_killed = Some((bridge, now, at_s, on));
                        }
                        Some((bridge, _)) => report.errors.push(format!("bridge {bridge} was not running")),
                        None => report
                            .errors
                            .push("no participant on any bridge: no bridge to kill".into()),
                    }
                }
                Event::Kill(faults::Kill::Leader) => match cluster.leader().await {
                    Some(leader) if cluster.kill_control(leader) => {
                        // From the kill itself: finding the leader took a round of requests.
                        let now = Instant::now();
                        let at_s = now.duration_since(hold_started).as_secs_f64();
                        tracing::info!(leader, "killed the control leader");
                        if let Some(after) = restart_after {
                            events.push((now + after, Event::RestartControl(leader)));
                        }
                        report.leader_kill = Some(self.watch_leader_outage(cluster, leader, now, at_s).await);
                    }
                    Some(leader) => report
                        .errors
                        .push(format!("control leader {leader} was not running")),
                    None => report
                        .errors
                        .push("the control nodes did not agree on a leader: no leader to kill".into()),
                },
                Event::RestartBridge(bridge) => match cluster.restart_bridge(&bridge) {
                    Ok(()) => restarted_at(&mut report, Some(at_s), None),
                    Err(error) => report.errors.push(format!("restarting bridge {bridge}: {error}")),
                },
                Event::RestartControl(id) => match cluster.restart_control(id) {
                    Ok(()) => restarted_at(&mut report, None, Some(at_s)),
                    Err(error) => report
                        .errors
                        .push(format!("restarting control node {id}: {error}")),
                },
            }
        }
        self.hold_until(end, end).await;

        if let Some((bridge, killed_at, at_s, on)) = bridge_killed {
            let snapshots: Vec<(usize, bridgemesh_sim::ParticipantStats, BridgeId, String)> = on
                .iter()
                .map(|&i| {
                    let joined = &self.joined[i];
                    (
                        i,
                        joined.participant.stats(),
                        joined.participant.bridge_id(),
                        joined.name.clone(),
                    )
                })
                .collect();
            let affected: Vec<faults::Affected<'_>> = snapshots
                .iter()
                .map(|(i, stats, bridge_now, name)| {
                    let joined = &self.joined[*i];
                    faults::Affected {
                        name,
                        join_started: joined.member.join_started,
                        stats,
                        expects_media: self.joined.iter().any(|other| {
                            other.room == joined.room
                                && other.publisher
                                && other.member.id != joined.member.id
                        }),
                        bridge_now: bridge_now.clone(),
                    }
                })
                .collect();
            let restarted = report.bridge_kill.take().and_then(|b| b.restarted_at_s);
            let mut kill = faults::bridge_kill_recovery(&bridge, killed_at, at_s, &affected);
            kill.restarted_at_s = restarted;
            report.bridge_kill = Some(kill);
        }
        self.faults = Some(report);
    }

    /// After the leader's kill at `killed_at`: waits for a new leader, sends probe joins and
    /// watches the participants' packets, all at once, for a bounded window.
    async fn watch_leader_outage(
        &self,
        cluster: &LocalCluster,
        killed: u64,
        killed_at: Instant,
        at_s: f64,
    ) -> faults::LeaderKillReport {
        let new_leader = async {
            while killed_at.elapsed() < faults::NEW_LEADER_TIMEOUT {
                if let Some(leader) = cluster.leader_other_than(killed).await {
                    return Some((leader, killed_at.elapsed()));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None
        };
        let probes = probe_joins(&self.config, cluster, killed_at);
        let watched = &self.joined[..self.joined.len().min(faults::WATCHED_MAX)];
        let packets = || -> Vec<u64> {
            watched
                .iter()
                .map(|j| j.participant.stats().received.values().map(|s| s.packets).sum())
                .collect()
        };
        let media = async {
            let mut watch = faults::PauseWatch::new(Instant::now(), &packets());
            let mut ticker = tokio::time::interval(faults::MEDIA_SAMPLE_INTERVAL);
            while killed_at.elapsed() < faults::LEADER_WATCH {
                ticker.tick().await;
                watch.sample(Instant::now(), &packets());
            }
            watch
        };
        let (new_leader, probe_joins, watch) = tokio::join!(new_leader, probes, media);
        let watched_for = killed_at.elapsed().min(faults::LEADER_WATCH);
        let (participants_watched, participants_stalled, longest_pause) =
            watch.finish(Duration::from_millis(faults::STALL_MS));
        let window_end = killed_at + faults::LEADER_WATCH;
        let sessions_lost = self
            .joined
            .iter()
            .map(|j| {
                j.participant
                    .stats()
                    .reconnects
                    .iter()
                    .filter(|r| {
                        let lost_at = j.member.join_started + r.lost_after_join;
                        lost_at >= killed_at && lost_at <= window_end
                    })
                    .count() as u64
            })
            .sum();
        faults::LeaderKillReport {
            node_id: killed,
            at_s,
            new_leader: new_leader.map(|(id, _)| id),
            new_leader_ms: new_leader.map(|(_, took)| took.as_millis() as u64),
            probe_joins,
            watched_ms: watched_for.as_millis() as u64,
            participants_watched,
            participants_stalled,
            longest_pause_ms: longest_pause.as_millis() as u64,
            sessions_lost,
            restarted_at_s: None,
        }
    }
}

/// Something the fault timeline does.
enum Event {
    Kill(faults::Kill),
    RestartBridge(BridgeId),
    RestartControl(u64),
}

/// Notes a restart in the report's kill section (made later for a bridge kill: its section is
/// built after the hold, and takes the time from the placeholder).
fn restarted_at(report: &mut FaultReport, bridge_s: Option<f64>, control_s: Option<f64>) {
    if let Some(at) = bridge_s {
        report
            .bridge_kill
            .get_or_insert_with(Default::default)
            .restarted_at_s = Some(at);
    }
    if let (Some(at), Some(leader)) = (control_s, report.leader_kill.as_mut()) {
        leader.restarted_at_s = Some(at);
    }
}

/// [`faults::PROBE_JOINS`] receive-only joins into room `{prefix}-probe`, one every
/// [`faults::PROBE_INTERVAL`] from `from`, each from its own loopback address. They stay until
/// the last one is done; then control's count of their room is taken (through `cluster`), and
/// they leave.
async fn probe_joins(config: &LoadConfig, cluster: &LocalCluster, from: Instant) -> faults::ProbeJoins {
    let mut report = faults::ProbeJoins::default();
    let room = match RoomId::new(format!("{}-probe", config.room_prefix)) {
        Ok(room) => room,
        Err(error) => {
            report.failures.push(format!("no probe room: {error}"));
            return report;
        }
    };
    let control_url = cluster.control_url();
    let join_bound = Duration::from_secs(config.join_timeout_s) + JOIN_SLACK;
    let mut tasks = JoinSet::new();
    for k in 0..faults::PROBE_JOINS {
        let at = tokio::time::Instant::from_std(from + faults::PROBE_INTERVAL * k as u32);
        let options = ParticipantOptions {
            publish_audio: false,
            publish_video: false,
            join_timeout: Duration::from_secs(config.join_timeout_s),
            bind_ip: Some(IpAddr::from([127, 0, 200, 1 + k as u8])),
            ..ParticipantOptions::new(format!("probe #{k}"))
        };
        let (room, control_url) = (room.clone(), control_url.clone());
        tasks.spawn(async move {
            tokio::time::sleep_until(at).await;
            let started = Instant::now();
            let result = tokio::time::timeout(
                join_bound,
                SyntheticParticipant::join(&control_url, &room, options),
            )
            .await
            .unwrap_or_else(|_| {
                Err(ParticipantError::Timeout(format!(
                    "join not done after {join_bound:?}"
                )))
            });
            let took = started.elapsed();
            match result {
                Ok(participant) => Ok((took, participant)),
                Err(error) => {
                    let no_capacity = matches!(
                        &error,
                        ParticipantError::Http {
                            code: Some(bridgemesh_proto::api::ErrorCode::NoCapacity),
                            ..
                        }
                    );
                    Err((
                        no_capacity,
                        format!("probe #{k} after {} ms: {error}", took.as_millis()),
                    ))
                }
            }
        });
    }
    let mut join_us = histogram::Histogram::default();
    let mut joined = Vec::new();
    while let Some(done) = tasks.join_next().await {
        report.attempted += 1;
        match done {
            Ok(Ok((took, participant))) => {
                report.ok += 1;
                join_us.record(took.as_micros() as u64);
                joined.push(participant);
            }
            Ok(Err((no_capacity, error))) => {
                report.failed += 1;
                report.refused_no_capacity += u64::from(no_capacity);
                report.failures.push(error);
            }
            Err(error) => {
                report.failed += 1;
                report.failures.push(format!("a probe task: {error}"));
            }
        }
    }
    let ids: std::collections::BTreeSet<&ParticipantId> =
        joined.iter().map(SyntheticParticipant::participant_id).collect();
    report.duplicate_ids = (joined.len() - ids.len()) as u64;
    report.in_control = cluster.room_participants(&room).await;
    for participant in joined {
        let _ = tokio::time::timeout(join_bound, participant.leave()).await;
    }
    report.join_ms = join_us.summary(1000.0);
    report
}

/// Starts a [`LocalCluster`] as `cluster` says, runs `config` against it (its control URL and
/// admin token are the cluster's; without source addresses each participant gets a loopback
/// address of its own, since control rate-limits joins per address) with `plan`'s faults during
/// the hold, and tears the cluster down. Dropping the future tears it down too.
pub async fn run_local(
    mut config: LoadConfig,
    cluster: LocalClusterConfig,
    plan: FaultPlan,
    progress: watch::Sender<Progress>,
) -> Result<LoadReport, LoadError> {
    config.validate()?;
    cluster.validate()?;
    plan.validate(config.duration_s).map_err(LoadError::Config)?;
    let mut local = LocalCluster::start(&cluster).await?;
    config.control_url = local.control_url();
    config.admin_token = Some(local.admin_token());
    if config.bind_ips.is_empty() {
        config.bind_ips = loopback_sources(config.rooms as usize * config.per_room as usize);
    }
    let duration = Duration::from_secs(config.duration_s);
    let mut run = LoadRun::start(config, progress).await?;
    run.hold_with_faults(duration, &mut local, &plan).await;
    run.cluster = Some(local.report());
    let report = run.finish().await;
    local.stop();
    Ok(report)
}
